"""The demo page at `/`: for an image task draw an input and watch the model read it, for a row task fill in a form
(prefilled from a test row); then say what it was. Every asset comes from this app."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ..deps import MaybeModelDep, SettingsDep
from ..policy import DEMO

router = APIRouter(tags=['pages'])

HERE = Path(__file__).resolve().parents[1]
STATIC = HERE / 'static'
templates = Jinja2Templates(directory=HERE / 'templates')

CSP = DEMO  # the page may load and call this server only: no CDN, no third-party anything (it works offline)
# the look every page shares: the demo, scoring and annotation pages link it, the reports (written by the library, read
# offline or published) carry it inline, so it lives with the library's templates
SITE_CSS = Path(__file__).resolve().parents[2] / 'mlproj' / 'templates' / 'site.css'


@router.get('/static/site.css', include_in_schema=False)
def site_css():
    "The stylesheet every page shares."
    return FileResponse(SITE_CSS, media_type='text/css', headers={'cache-control': 'public, max-age=3600'})


def sample_row(settings, task, model) -> dict:
    "A row to prefill the form with: the first of the served model's test split, else of the task's benchmark; {} if neither reads."
    import logging

    try:
        from mlproj.data import load_split
        from mlproj.store import Store

        X, _ = load_split(Store(settings.store_url), model.manifest['dataset_version'], 'test')
        return task.render(X[0])
    except Exception:
        pass
    try:
        b = task.benchmark()
        return task.render(task.decode(b.items[0], b.media_type))
    except Exception:
        logging.getLogger(__name__).warning('no test row for the demo form of task %s', task.name, exc_info=True)
        return {}


@router.get('/', response_class=HTMLResponse, include_in_schema=False)
async def demo(request: Request, settings: SettingsDep, model: MaybeModelDep):
    "The demo page."
    state, task = request.app.state, request.app.state.task
    fields = []
    if task.input.kind == 'row':
        key = model.version if model else None
        if getattr(state, 'sample_row', (object(), None))[0] != key:
            state.sample_row = (key, await run_in_threadpool(sample_row, settings, task, model))
        row, units = state.sample_row[1], task.input.units or ('',) * len(task.input.features)
        fields = [
            dict(name=f, unit=u, value='' if row.get(f) is None else f'{float(row[f]):.6g}')
            for f, u in zip(task.input.features, units)
        ]
    page = templates.TemplateResponse(
        request,
        'demo.html',
        dict(
            corrections=settings.serving.corrections,
            model_version=model.version if model else None,
            model_error=None if model else request.app.state.model_error,
            kind=task.input.kind,
            title=task.title or task.input.describe(),
            classes=[str(c) for c in task.classes],
            fields=fields,
            min_confidence=settings.serving.min_confidence,
        ),
    )
    page.headers['Content-Security-Policy'] = CSP
    return page
