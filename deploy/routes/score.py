"""The scoring tool: `/score` (a page) and `/score/submissions` (JSON), over `mlproj.score` and `mlproj.report`."""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from mlproj.score import MAX_BYTES, ScoreError

from ..deps import SettingsDep
from ..limits import RateLimit
from ..schemas import ErrorDetail, LeaderboardResponse, ScoreRefusal, ScoreResponse

router = APIRouter(tags=['score'])


class CSVResponse(PlainTextResponse):
    media_type = 'text/csv'


templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / 'templates')

VERSION = (
    "the dataset version whose test split is scored: 'benchmark' (the default), 'service-like', "
    'or a dataset version id (or its first 6 or more characters)'
)
_BAD_VERSION = {
    404: {
        'description': 'no dataset version of that name or id (or the prefix names several)',  # JSON, whatever the page's type
        'content': {'application/json': {'schema': {'$ref': '#/components/schemas/ErrorDetail'}}},
    }
}
_REFUSED = {
    413: {
        'model': ScoreRefusal,
        'description': f'the file is larger than {MAX_BYTES:,} bytes (or the body than [serving] max_body_bytes)',
    },
    422: {
        'model': ScoreRefusal,
        'description': 'the file cannot be scored: `errors` lists each problem with its line number '
        '(not CSV, no header, unknown or repeated item id, a label that is neither a class name of the task nor its index, '
        'a confidence outside 0..1, missing items), '
        'or its test split is empty',
    },
    404: {'model': ScoreRefusal, 'description': 'no dataset version of that name or id (or the prefix names several)'},
    403: {
        'model': ScoreRefusal,
        'description': 'the name was claimed by an earlier submission and `claim` is not its claim token',
    },
    429: {
        'model': ErrorDetail,
        'description': 'more than [score] submissions_per_hour from this client address; Retry-After '
        'says when to try again',
    },
}


class Scored(ScoreResponse):
    "A scored submission: the evaluation figures (never an item with its label) and its row on the leaderboard."

    metrics: dict[str, Any] = Field(
        description='accuracy, macro_f1, per-class recall and precision, ece and reliability bins (with '
        'confidences), and accuracy by slice for a service-like version; no confusion matrix and no '
        'mistakes list, which would give the hidden test labels away'
    )
    claim_token: str | None = Field(
        None,
        description='when this submission claimed its name (the first under it): the token later '
        'submissions under the name must send as `claim`; shown once, keep it',
    )


def _state(request: Request, settings):
    "The named versions and the leaderboard, made once per app (a new service-like set shows after a restart)."
    st = request.app.state
    if getattr(st, 'score', None) is None:
        from mlproj.score import Leaderboard, leaderboard_url, named_versions
        from mlproj.store import Store

        st.score = dict(
            store=Store(settings.store_url),
            board=Leaderboard(leaderboard_url(settings)),
            named=named_versions(settings),
        )
    return st.score


async def _context(request: Request, settings) -> dict:
    lock = request.app.state.__dict__.setdefault('score_lock', asyncio.Lock())
    async with lock:
        return await run_in_threadpool(_state, request, settings)  # one build, however many requests wait


def _resolve(ctx: dict, ref: str | None) -> str:
    "The dataset version id `ref` names, or a ScoreError saying which names and ids there are."
    from mlproj.data import resolve_version

    ref = (ref or 'benchmark').strip()
    if ref in ctx['named']:
        return ctx['named'][ref]
    try:
        vid = resolve_version(ctx['store'], ref) if ref.isalnum() else None
    except LookupError as e:
        raise ScoreError([str(e)], 404) from None
    if vid is None:
        raise ScoreError(
            [f"no dataset version {ref[:40]!r}: give 'benchmark', 'service-like' or a dataset version id"], 404
        )
    return vid


async def _version(request: Request, settings, ref: str | None) -> tuple[dict, str]:
    "The scoring context and the dataset version `ref` names; 404 when it names none."
    ctx = await _context(request, settings)
    try:
        return ctx, _resolve(ctx, ref)
    except ScoreError as e:
        raise HTTPException(e.status, e.errors[0]) from None


def _described(ctx: dict, vid: str) -> dict:
    "How the page names dataset version `vid` to a person: its name and description first, its id in small print."
    titles = ctx.setdefault('titles', {})
    if vid not in titles:
        from mlproj.versions import get_version

        try:
            description = get_version(ctx['store'], vid).get('description') or ''
        except KeyError:  # named but not written yet (a service-like set not built): its name is enough
            description = ''
        ref = next((n for n, v in ctx['named'].items() if v == vid), vid)
        name = ref if ref != vid else (description or f'dataset version {vid[:8]}')
        titles[vid] = dict(
            ref=ref,
            id=vid,
            name=name,
            description=description,
            title=f'test split of {name}',
            about=' · '.join([*([description] if description and description != name else []), f'version {vid[:8]}']),
        )
    return titles[vid]


def _classes(ctx: dict, vid: str) -> list:
    "The class names of the task dataset version `vid` was made for (the labels a predictions file gives)."
    classes = ctx.setdefault('classes', {})
    if vid not in classes:
        from mlproj.data import version_task

        try:
            classes[vid] = list(version_task(ctx['store'], vid).classes)
        except KeyError:  # named but not written yet: the page still shows, without the names
            classes[vid] = []
    return classes[vid]


def _refusal(e: ScoreError) -> JSONResponse:
    return JSONResponse(
        {
            'detail': '; '.join(e.errors[:3]) + (f' (and {len(e.errors) - 3} more)' if len(e.errors) > 3 else ''),
            'errors': e.errors,
        },
        e.status,
    )


@router.get('/score', response_class=HTMLResponse, responses=_BAD_VERSION)
async def score_page(
    request: Request,
    settings: SettingsDep,
    version: Annotated[str | None, Query(max_length=100, description=VERSION)] = None,
):
    "The scoring page: upload a predictions CSV, see the evaluation report of it, and the leaderboard."
    ctx, vid = await _version(request, settings, version)
    rows = await run_in_threadpool(ctx['board'].rows, vid)
    ids = [*ctx['named'].values(), *([] if vid in ctx['named'].values() else [vid])]
    versions = [await run_in_threadpool(_described, ctx, v) for v in ids]
    return templates.TemplateResponse(
        request,
        'score.html',
        dict(
            versions=versions,
            vid=vid,
            rows=rows,
            max_bytes=MAX_BYTES,
            per_hour=settings.score.submissions_per_hour,
            chosen=next(v for v in versions if v['id'] == vid),
            classes=_classes(ctx, vid),
        ),
    )


@router.get('/score/template.csv', response_class=CSVResponse, responses=_BAD_VERSION)
async def score_template(
    request: Request,
    settings: SettingsDep,
    version: Annotated[str | None, Query(max_length=100, description=VERSION)] = None,
):
    "A predictions file to fill in: `item,label` and one line per item of the version's test split (labels empty)."
    from mlproj.score import template_csv

    ctx, vid = await _version(request, settings, version)
    return CSVResponse(
        await run_in_threadpool(template_csv, ctx['store'], vid),
        headers={'Content-Disposition': f'attachment; filename="predictions-{vid}.csv"'},
    )


@router.get('/score/submissions', responses=_BAD_VERSION)
async def leaderboard(
    request: Request,
    settings: SettingsDep,
    version: Annotated[str | None, Query(max_length=100, description=VERSION)] = None,
) -> LeaderboardResponse:
    "The leaderboard of a dataset version: every scored submission, best first (accuracy, then macro-F1, then the earlier)."
    ctx, vid = await _version(request, settings, version)
    return LeaderboardResponse(dataset_version=vid, submissions=await run_in_threadpool(ctx['board'].rows, vid, None))


@router.post('/score/submissions', responses=_REFUSED)
async def submit(
    request: Request,
    settings: SettingsDep,
    file: Annotated[
        UploadFile,
        File(
            description='the predictions CSV: a header `item,label` (and `confidence`, the '
            'probability of each answer, for calibration), then one line per item of the test split'
        ),
    ],
    version: Annotated[str, Form(max_length=100, description=VERSION)] = 'benchmark',
    name: Annotated[
        str,
        Form(
            max_length=100,
            description='who submits (shown on the leaderboard); the first '
            "submission under a name claims it; empty: anonymous, which is anyone's",
        ),
    ] = '',
    claim: Annotated[
        str,
        Form(
            max_length=100,
            description="the name's claim token, which its first submission "
            'returned (claim_token); needed for every later submission under that name',
        ),
    ] = '',
    report: Annotated[
        bool,
        Form(
            description='also return the report as an HTML fragment (figures inline; no '
            'confusion matrix and no mistakes: the test labels stay hidden)'
        ),
    ] = False,
) -> Scored:
    """Score a predictions CSV against a dataset version's test split; it joins the leaderboard. Refusals list every problem
    with its line number. No token: the page is public; `[score] submissions_per_hour` bounds each client (429)."""
    data = await file.read()  # the body is bounded by [serving] max_body_bytes; the file by MAX_BYTES (413)
    ctx = await _context(request, settings)

    def scored():
        from mlproj.score import clean_name, score_predictions

        return clean_name(name), score_predictions(ctx['store'], _resolve(ctx, version), data)

    def kept(who: str, result: dict):
        from mlproj.score import score_report_html

        row = ctx['board'].add(who, result, hashlib.sha256(data).hexdigest(), claim.strip() or None)
        return row, score_report_html(result, ctx['store']) if report else None

    try:
        who, result = await run_in_threadpool(scored)
        _limit(
            request, settings
        )  # only a file that scores counts (a refusal tells nothing about the labels); its figures are not sent past it
        row, page = await run_in_threadpool(kept, who, result)
    except ScoreError as e:
        return _refusal(e)
    token = row.pop('claim_token')
    return Scored(submission=row, metrics=result['model'], slices=result['slices'], report_html=page, claim_token=token)


def _limit(request: Request, settings):
    "429 past [score] submissions_per_hour scored files from this client address (on the event loop: RateLimit is not thread-safe)."
    per_hour = settings.score.submissions_per_hour
    limit = request.app.state.__dict__.setdefault('score_limit', RateLimit(per_hour, seconds=3600))
    client = request.client.host if request.client else 'unknown'
    if wait := limit.wait(client):  # every scored file tells a little about the hidden labels: this bounds how fast
        raise HTTPException(
            429,
            f'this address has sent the {per_hour} scored files an hour this server takes: try again in '
            f'{math.ceil(wait)} s (for the operator: [score] submissions_per_hour)',
            headers={'Retry-After': str(math.ceil(wait))},
        )
