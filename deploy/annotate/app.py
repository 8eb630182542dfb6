"""The annotation web app: server-rendered pages, a little JavaScript, a JSON API; all the logic is in mlproj.annotate.

    uvicorn deploy.annotate.app:app_from_env --factory

People log in with their personal link (`/login/<token>`, which sets a cookie); scripts can send the same token as
`Authorization: Bearer <token>`. Everything a person reads or writes is checked against the token's owner (403).
"""
from __future__ import annotations

import functools
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from mlproj import annotate as A
from mlproj.settings import Settings, load_settings

from ..limits import Workers
from .schemas import (Adjudicated, Adjudication, Agreement, Answer, AssignmentRecord, Next, PathId, Progress, SaveResponse,
                      UndoResponse, document_refusals, refusals)

__all__ = ['create_app', 'app_from_env']

HERE = Path(__file__).parent
COOKIE = 'mlproj_annotate'
templates = Jinja2Templates(directory=HERE / 'templates')


_bearer = HTTPBearer(auto_error=False)


async def _person(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]):
    "The token's owner (Bearer header or login cookie): 401 without a valid one. Async: a cache hit costs no thread."
    token = cred.credentials if cred else request.cookies.get(COOKIE)
    if not token: raise HTTPException(401, 'log in with your personal link (/login/<token>) or send Authorization: Bearer <token>')
    cache = request.app.state.people
    person = cache.get(token)
    if person is None:
        person = await run_in_threadpool(A.person_for_token, request.app.state.db, token)
        if person is None: raise HTTPException(401, 'this login link or token is not valid: ask the project admin for yours')
        cache[token] = person
    return person


PersonDep = Annotated[object, Depends(_person)]


def _http(fn, *args, **kw):
    "Call into mlproj.annotate, turning its errors into HTTP answers that say what to do."
    try: return fn(*args, **kw)
    except A.Forbidden as e: raise HTTPException(403, str(e))
    except A.NotFound as e: raise HTTPException(404, str(e))
    except A.Conflict as e: raise HTTPException(409, str(e))
    except ValueError as e: raise HTTPException(422, str(e))


PG_WRITERS = 4 # saves in flight at once in one process on PostgreSQL; more only pass the GIL between threads waiting on the server


async def _db_call(state, fn, *args):
    "`_http(fn, *args)`: on SQLite right on the event loop, on PostgreSQL on one of `PG_WRITERS` threads."
    if state.db.sqlite: return _http(fn, *args) # a fraction of a millisecond, one writer at a time anyway: the thread hop cost more than the save
    # waits on the server's round trips and its commit: not on the loop. With 40 threads (Starlette's default) 50 annotators
    # saving back to back got 419 to 451 saves/s at 2.0 ms of CPU a save; with 4, 541 to 599 saves/s at 1.5 to 1.7 ms
    return await state.writers.run(_http, fn, *args)


def _json(data) -> Response:
    "A JSON answer without FastAPI's encoder walking it first (plain dicts, lists, numbers and strings only)."
    import orjson
    return Response(orjson.dumps(data), media_type='application/json')


def _project(request, person):
    projects = request.app.state.projects
    if person.project_id not in projects:
        from mlproj.db import Project
        with request.app.state.db.read() as s: projects[person.project_id] = s.get(Project, person.project_id)
    return projects[person.project_id]


# the pages load and call this server only (no CDN: they work offline), and run no inline script: a guide that got
# script past the Markdown renderer would still not run it. Images may come from https: (a guide's examples)
CSP = ("default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# an item's bytes opened on their own (an SVG from a crawl is a document that can hold script): nothing runs
ITEM_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


@functools.cache
def _markdown():
    import mistune
    return mistune.create_markdown(escape=True) # raw HTML shown as text; javascript:/data: links become #harmful-link


def _guide(text: str) -> str:
    "The project's guide as HTML: Markdown only, no HTML of its own (so no script, no event handler)."
    return _markdown()(text or '')


def _page(request: Request, template: str, **context) -> HTMLResponse:
    page = templates.TemplateResponse(request, template, context)
    page.headers['Content-Security-Policy'] = CSP
    return page


def create_app(settings: Settings, db_url: str | None = None) -> FastAPI:
    "The annotation app over the database [annotate] database (or `db_url`) and the raw store of `settings`."
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.db = await run_in_threadpool(A.open_db, settings, db_url) # applies the migrations
        yield
        app.state.db.close()

    app = FastAPI(title='mlproj annotate', lifespan=lifespan, summary='Label raw items, k annotators each; agreement and adjudication.')
    app.state.settings, app.state.people, app.state.projects, app.state.writers = settings, {}, {}, Workers(PG_WRITERS)
    app.mount('/static', StaticFiles(directory=HERE / 'static'), name='static')

    @app.get('/login/{token}', include_in_schema=False)
    def login(token: str, request: Request):
        person = A.person_for_token(request.app.state.db, token)
        if person is None: raise HTTPException(401, 'this login link is not valid: ask the project admin for yours')
        r = RedirectResponse('/review' if person.role == 'reviewer' else '/', status_code=303)
        r.set_cookie(COOKIE, token, httponly=True, samesite='strict', max_age=90 * 86400)
        return r

    @app.get('/', response_class=HTMLResponse, include_in_schema=False)
    def label_page(request: Request, person: PersonDep):
        if person.role == 'reviewer': return RedirectResponse('/review', status_code=303)
        p = _project(request, person)
        return _page(request, 'label.html', person=person, project=p, guide=_guide(p.guide))

    @app.get('/review', response_class=HTMLResponse, include_in_schema=False)
    def review_page(request: Request, person: PersonDep):
        if person.role != 'reviewer': raise HTTPException(403, 'the review page is for reviewers')
        p = _project(request, person)
        db = request.app.state.db
        if request.query_params.get('suggest'): A.suggest(db, request.app.state.settings, p.name) # lazily: loads the model once asked
        return _page(request, 'review.html', person=person, project=p, guide=_guide(p.guide), items=A.to_review(db, p.name),
                     agreement=A.agreement(db, p.name))

    @app.get('/api/next', response_model=Next, responses=refusals(403))
    def next_item(request: Request, person: PersonDep, exclude: Annotated[str, Query(
            pattern='^[0-9,]*$', max_length=2000, description='assignment ids the page holds or has answered without an answer back yet, '
                                                             'comma-separated')] = ''):
        "The next item to label (a lease): one the page holds already is never handed to it again."
        ex = [int(x) for x in exclude.split(',') if x]
        return dict(next=_http(A.next_assignment, request.app.state.db, person, ex))

    @app.post('/api/assignments/{assignment_id}', response_model=SaveResponse, responses=refusals(403, 404, 409))
    async def save(assignment_id: Annotated[int, PathId('assignment')], body: Answer, request: Request, person: PersonDep):
        "Save a label (or a skip: label null); answers with the next item to preload and progress."
        db = request.app.state.db
        return _json(await _db_call(request.app.state, A.answer, db, person, assignment_id, body.label, body.item_id, body.exclude))

    @app.get('/api/assignments/{assignment_id}', response_model=AssignmentRecord, responses=refusals(403, 404))
    def read_assignment(assignment_id: Annotated[int, PathId('assignment')], request: Request, person: PersonDep):
        "One of your assignments (403 if it is someone else's)."
        from mlproj.db import Assignment
        with request.app.state.db.read() as s:
            a = s.get(Assignment, assignment_id)
            if a is None: raise HTTPException(404, f'no assignment {assignment_id}')
            if a.person_id != person.id: raise HTTPException(403, f'assignment {assignment_id} is not yours')
            return dict(id=a.id, item_id=a.item_id, state=a.state, label=a.label)

    @app.post('/api/undo', response_model=UndoResponse)
    def undo(request: Request, person: PersonDep):
        "Take back your last label: its item comes back to you."
        return dict(undone=_http(A.undo, request.app.state.db, person))

    @app.get('/api/progress', response_model=Progress)
    def progress(request: Request, person: PersonDep):
        "Labels you gave, and the project's figures (reused for a fraction of a second)."
        return A.progress(request.app.state.db, person)

    @app.get('/api/items/{item_id}/image', include_in_schema=False)
    def image(item_id: Annotated[int, PathId('item')], request: Request, person: PersonDep):
        "An item's image: for a person it was handed to, or a reviewer of its project."
        from mlproj.db import Assignment, Item
        from sqlalchemy import select
        with request.app.state.db.read() as s:
            item = s.get(Item, item_id)
            if item is None: raise HTTPException(404, f'no item {item_id}')
            mine = s.scalar(select(Assignment.id).where(Assignment.item_id == item_id, Assignment.person_id == person.id))
        if item.project_id != person.project_id or (person.role != 'reviewer' and mine is None):
            raise HTTPException(403, f'item {item_id} was not handed to you')
        from mlproj.store import Store, get_item
        data = get_item(Store(request.app.state.settings.store_url), item.sha256)
        media = item.media_type
        if not media.startswith('image/'): # 8x8 counts of the benchmark: drawn large
            import numpy as np
            from mlproj.data import decode_example
            from mlproj.preprocess import render_counts
            data, media = render_counts(decode_example(data, media), size=192, margin=16), 'image/png'
        return Response(data, media_type=media, headers={'cache-control': 'private, max-age=3600', 'Content-Security-Policy': ITEM_CSP,
                                                         'X-Content-Type-Options': 'nosniff'})

    @app.post('/api/review/{item_id}', response_model=Adjudicated, responses=refusals(403))
    def adjudicate(item_id: Annotated[int, PathId('item')], body: Adjudication, request: Request, person: PersonDep):
        "A reviewer's label for an item without a majority."
        _http(A.adjudicate, request.app.state.db, person, item_id, body.label)
        return dict(item_id=item_id, label=body.label)

    @app.get('/api/agreement', response_model=Agreement, responses=refusals(403))
    def agreement(request: Request, person: PersonDep):
        "Agreement figures of your project (reviewers only: annotators are blind to each other)."
        if person.role != 'reviewer': raise HTTPException(403, 'agreement figures are for reviewers')
        return A.agreement(request.app.state.db, _project(request, person).name)

    return document_refusals(app, _person)


def app_from_env() -> FastAPI:
    "The app as settings.ini and MLPROJ_* variables set it up (uvicorn's factory: this is the server process)."
    import sys
    settings = load_settings()
    if (settings.annotate.database or '').startswith('postgresql'):
        # a save waits on eight round trips in a thread; after each, the thread needs the GIL back from the event loop,
        # which gives it up every 5 ms by default. At 0.5 ms the open-loop bench's p99 fell to 0.2 to 0.6x in three pairs
        sys.setswitchinterval(0.0005)
    return create_app(settings)
