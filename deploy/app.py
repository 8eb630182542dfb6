"""The FastAPI application: `create_app(settings)` builds it; `app_from_env` is uvicorn's factory.

uvicorn deploy.app:app_from_env --factory
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from mlproj import __version__
from mlproj.settings import Settings, load_settings
from mlproj.task import task_of

from .inputs import reader_for
from .limits import BodyLimit, Guard, Processes, RateLimit, Workers, return_large_blocks
from .observe import observe
from .policy import PagePolicy, docs_policy
from .routes import ROUTERS, pages, predict
from .schemas import describe_task, document_refusals
from .serving import Gather, Reloader, load_model

__all__ = ['api_docs', 'app_from_env', 'create_app']

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,  # the project's settings, built once by the caller
    model_ref: str
    | int
    | None = None,  # version or alias; default: [serving] model, else production, else newest accepted
) -> FastAPI:
    "The API app. Its model loads at startup; if that fails, /health still answers and /ready and /predict say why."
    ref = model_ref or settings.serving.model or None
    task = task_of(settings)  # the task the server runs: its inputs, classes and page; a bundle of another is refused

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.registry, app.state.model, app.state.model_error = await run_in_threadpool(load_model, settings, ref)
        metrics = app.state.metrics
        metrics.loaded(app.state.model and app.state.model.version, app.state.model_error)
        app.state.reloader = Reloader(app.state, settings, ref, on_swap=metrics.swapped, on_failure=metrics.failed)
        await run_in_threadpool(app.state.reloader.check)  # takes the registry's stamp as of now
        poll = asyncio.create_task(_poll(app.state.reloader, settings.serving.reload_seconds))
        try:
            yield
        finally:
            poll.cancel()
            await asyncio.gather(poll, return_exceptions=True)
            app.state.processes.close()

    app = FastAPI(
        title='mlproj',
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # ours: offline
        summary=f'Task {task.name!r}: {task.title or task.input.describe()}',
    )
    app.state.settings = settings
    app.state.task, app.state.reader = task, reader_for(task, settings.task.name)
    app.state.registry, app.state.model = None, None
    app.state.model_error = 'no model is loaded: the application has not started (its lifespan has not run)'
    app.state.reload_error = None
    app.state.workers = Workers(settings.serving.decode_threads)  # CPU work off the event loop, bounded
    app.state.processes = Processes(settings.serving.decode_threads)  # CPU work that holds the GIL: large JSON bodies
    app.state.gather = Gather(
        max_images=predict.INLINE_IMAGES,  # small batches read in one turn: one model call, run inline
        on_call=lambda n: app.state.metrics.shared.observe(n),
    )
    app.state.corrections_limit = RateLimit(settings.serving.corrections_per_minute)  # the public page's writes
    return_large_blocks()  # so that peak memory is what is live, bounded by settings.ini, not what malloc kept
    app.add_middleware(BodyLimit, max_bytes=settings.serving.max_body_bytes)
    app.add_middleware(
        Guard, max_concurrent=settings.serving.max_concurrent, body_timeout=settings.serving.body_timeout
    )
    app.add_middleware(PagePolicy)  # Content-Security-Policy of the scoring and reports pages
    observe(app)  # outermost: request id, metrics and access log for every answer, refusals included; adds /metrics
    for name in ROUTERS:  # deploy/routes/__init__.py lists them (a project without an optional stage lacks its own)
        app.include_router(importlib.import_module(f'{__package__}.routes.{name}').router)
    app.mount('/static', StaticFiles(directory=pages.STATIC), name='static')  # the demo page's script and style
    api_docs(app)
    describe_task(app, task, app.state.reader)  # /predict's body (the task's own, or from its input), its classes
    return document_refusals(app)  # last: it documents every route's 401/403/408/503


def api_docs(app: FastAPI) -> FastAPI:
    """/docs (Swagger UI) and /redoc (ReDoc) with every asset served by this app, so they work offline: FastAPI's own
    load Swagger UI, ReDoc and fonts from CDNs. The files come from the fastapi-offline package (Swagger UI's dist files
    and ReDoc's standalone bundle, kept current by its maintainer); Swagger UI's online validator is off, and the pages'
    Content-Security-Policy keeps them on this origin (ReDoc always shows Redocly's logo from its CDN: not fetched)."""
    from pathlib import Path

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse, PlainTextResponse

    try:
        import fastapi_offline
    except (
        ImportError
    ):  # an environment installed before it was a dependency: the API still serves, its docs say why not
        missing = lambda: PlainTextResponse(
            'the API docs need the fastapi-offline package, a dependency of mlproj '
            '(pip install -e .): it ships Swagger UI and ReDoc',
            503,
        )
        for path in ('/docs', '/redoc'):
            app.add_api_route(path, missing, include_in_schema=False)
        return app
    assets = '/docs-assets'
    app.mount(assets, StaticFiles(directory=Path(fastapi_offline.__file__).parent / 'static'), name='docs-assets')

    @app.get('/docs', include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get('root_path', '')
        return docs_policy(
            get_swagger_ui_html(
                openapi_url=root + app.openapi_url,
                title=f'{app.title}: API (Swagger UI)',
                oauth2_redirect_url=root + app.swagger_ui_oauth2_redirect_url,
                swagger_js_url=f'{root}{assets}/swagger-ui-bundle.js',
                swagger_css_url=f'{root}{assets}/swagger-ui.css',
                swagger_favicon_url=f'{root}{assets}/favicon.png',
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), 'validatorUrl': None},
            )
        )

    @app.get(app.swagger_ui_oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get('/redoc', include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get('root_path', '')
        return docs_policy(
            get_redoc_html(
                openapi_url=root + app.openapi_url,
                title=f'{app.title}: API (ReDoc)',
                redoc_js_url=f'{root}{assets}/redoc.standalone.js',
                redoc_favicon_url=f'{root}{assets}/favicon.png',
                with_google_fonts=False,
            )
        )

    return app


async def _poll(reloader: Reloader, every: float):
    "Ask the registry every `every` seconds whether the served reference moved (a stat); swap when it did. 0: never."
    if every <= 0:
        return
    while True:
        await asyncio.sleep(every)
        try:
            await run_in_threadpool(reloader.check)
        except Exception:
            log.exception('checking the registry for a new model failed')  # never ends the loop


def app_from_env() -> FastAPI:
    "The app as settings.ini and MLPROJ_* variables set it up; MLPROJ_MODEL (or MLPROJ_SERVING_MODEL) picks the model."
    return create_app(load_settings(), os.environ.get('MLPROJ_MODEL') or None)
