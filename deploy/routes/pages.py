"""The demo page at `/`: draw a digit, watch the model read it, say what it was. Every asset comes from this app."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..deps import MaybeModelDep, SettingsDep
from ..policy import DEMO

router = APIRouter(tags=['pages'])

HERE = Path(__file__).resolve().parents[1]
STATIC = HERE / 'static'
templates = Jinja2Templates(directory=HERE / 'templates')

CSP = DEMO  # the page may load and call this server only: no CDN, no third-party anything (it works offline)


@router.get('/', response_class=HTMLResponse, include_in_schema=False)
async def demo(request: Request, settings: SettingsDep, model: MaybeModelDep):
    "The demo page."
    page = templates.TemplateResponse(
        request,
        'demo.html',
        dict(
            corrections=settings.serving.corrections,
            model_version=model.version if model else None,
            model_error=None if model else request.app.state.model_error,
        ),
    )
    page.headers['Content-Security-Policy'] = CSP
    return page
