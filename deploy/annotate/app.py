"""The annotation web app: server-rendered pages, a little JavaScript, a JSON API; all the logic is in mlproj.annotate.

    uvicorn deploy.annotate.app:app_from_env --factory

People log in with their personal link (`/login/<token>`, which sets a cookie); scripts can send the same token as
`Authorization: Bearer <token>`. Everything a person reads or writes is checked against the token's owner (403).
Routes are in `routes/` (pages, labelling, review), what they depend on in `deps.py`, bodies in `schemas.py`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from mlproj import annotate as A
from mlproj.settings import Settings, load_settings

from ..limits import Workers
from ..routes.pages import site_css
from .deps import PG_WRITERS, get_person
from .routes import label, pages, review
from .schemas import document_refusals

__all__ = ['app_from_env', 'create_app']


def create_app(settings: Settings, db_url: str | None = None) -> FastAPI:
    "The annotation app over the database [annotate] database (or `db_url`) and the raw store of `settings`."

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.db = await run_in_threadpool(A.open_db, settings, db_url)  # applies the migrations
        yield
        app.state.db.close()

    app = FastAPI(
        title='mlproj annotate',
        lifespan=lifespan,
        summary='Label raw items, k annotators each; agreement and adjudication.',
    )
    app.state.settings, app.state.people, app.state.projects, app.state.writers = settings, {}, {}, Workers(PG_WRITERS)
    app.add_api_route('/static/site.css', site_css, include_in_schema=False)  # the look every page shares
    app.mount('/static', StaticFiles(directory=pages.STATIC), name='static')
    for r in (pages.router, label.router, review.router):
        app.include_router(r)
    return document_refusals(app, get_person)  # last: it documents every route's 401, 400 and 422


def app_from_env() -> FastAPI:
    "The app as settings.ini and MLPROJ_* variables set it up (uvicorn's factory: this is the server process)."
    import sys

    settings = load_settings()
    if (settings.annotate.database or '').startswith('postgresql'):
        # a save waits on eight round trips in a thread; after each, the thread needs the GIL back from the event loop,
        # which gives it up every 5 ms by default. At 0.5 ms the open-loop bench's p99 fell to 0.2 to 0.6x in three pairs
        sys.setswitchinterval(0.0005)
    return create_app(settings)
