"""The reports index and the runs' HTML reports, as `mlproj.jobs.write_index` writes them under [paths] reports."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool

from ..deps import SettingsDep

router = APIRouter(tags=['reports'])

_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,199}')  # a run id or a file name: no path separators, no leading dot
_NOT_FOUND = {
    404: {
        'description': 'no such run or report',  # JSON, whatever the route's own media type
        'content': {'application/json': {'schema': {'$ref': '#/components/schemas/ErrorDetail'}}},
    }
}


@router.get('/reports/', response_class=HTMLResponse)
async def reports_index(settings: SettingsDep) -> HTMLResponse:
    "Every run, newest first: state, headline figures (test and service-like accuracy, ECE), PASS/FAIL, links, two side by side."
    from mlproj.jobs import write_index

    path = settings.reports_dir / 'index.html'
    if not path.is_file():
        path = await run_in_threadpool(write_index, settings)
    return HTMLResponse(await run_in_threadpool(path.read_text, encoding='utf-8'))


@router.get('/reports/runs/{run_id}/{name}', response_class=HTMLResponse, responses=_NOT_FOUND)
async def run_report(run_id: str, name: str, settings: SettingsDep):
    "A run's HTML report (the executed job notebook), as the index links it."
    if not (_NAME.fullmatch(run_id) and _NAME.fullmatch(name) and name.endswith('.html')):
        raise HTTPException(404, 'no such report: a run id and an .html file name of that run')
    path = settings.reports_dir / 'runs' / run_id / name
    if not path.is_file():
        raise HTTPException(404, f'run {run_id!r} has no report {name!r}')
    return FileResponse(path, media_type='text/html')
