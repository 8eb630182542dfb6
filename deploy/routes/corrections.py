"""Corrections from the demo page: "it was a 7" turns a drawing (or, for a row task, a row) into a labelled raw item, so
what people send becomes data. Labels are checked against the task's classes (their indices 0..n-1); a row is stored as
JSON (application/json), a drawing as the image it was sent as.

A correction is kept through the raw store (`mlproj.servicelike.add_correction`: content-addressed, with provenance),
joins the service-like evaluation set the next time it is built (never training), and, with the annotation stage
and `[annotate] feedback` on, the feedback annotation project (`mlproj.suggest.capture_feedback`)."""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mlproj.collect import sniff_image
from mlproj.servicelike import add_correction
from mlproj.store import Store, canonical_json
from mlproj.suggest import capture_feedback  # only-with: annotation
from mlproj.task import InputError

from ..deps import MaybeModelDep, SettingsDep
from ..inputs import loads_json, prepare_row
from ..schemas import KINDS, CorrectionResponse, ErrorDetail

router = APIRouter(tags=['corrections'])

SEND = (
    "send multipart/form-data with the drawing under the field 'file' and the class it was (its index) under 'label', "
    'e.g. curl -F file=@drawing.png -F label=1'
)
ROW_SEND = 'send JSON {"row": {feature: value, ...}, "label": the index of the class it was}'


_ERRORS = {
    code: {'model': ErrorDetail, 'description': d}
    for code, d in [
        (400, 'a body that is not valid multipart'),
        (403, 'corrections are turned off on this server ([serving] corrections = false)'),
        (413, 'the file is larger than [serving] max_correction_bytes, or over the image limits of [serving]'),
        (415, 'not multipart/form-data (an image task) or application/json (a row task)'),
        (
            429,
            'more than [serving] corrections_per_minute from this client address; Retry-After says when to try again',
        ),
        (
            422,
            "no 'label', a label that is not a class index, no 'file' (or 'row'), a file that is not an image or "
            'that the task cannot read, a row it cannot read, or an unexpected field; the detail says which',
        ),
    ]
}


def _label(value, classes: tuple, send: str = SEND) -> int:
    "The class index `value` holds (a form field's text, or a JSON integer), or the 422 saying which are allowed."
    n = len(classes)
    which = (
        f'a class index from 0 to {n - 1} ('
        + ', '.join(f'{i} {c}' for i, c in enumerate(classes[:12]))
        + (', ...)' if n > 12 else ')')
    )
    if value is None:
        raise HTTPException(422, f"the correction has no 'label': say which class it was, {which}. {send}")
    if isinstance(value, int) and not isinstance(value, bool):
        v = str(value)
    elif isinstance(value, str):
        v = value.strip()
    else:
        raise HTTPException(422, f"'label' must be {which}, not {type(value).__name__}")
    if not (v.isascii() and v.isdigit()) or int(v) >= n:
        raise HTTPException(422, f'label must be {which}, not {str(value)[:20]!r}')
    return int(v)


async def _form(request: Request, max_bytes: int) -> tuple[str, bytes, str | None]:
    "(file name, file bytes, label text or None) of a multipart correction, or the 4xx saying what is wrong."
    media_type = request.headers.get('content-type', '').split(';')[0].strip().lower()
    if media_type != 'multipart/form-data':
        raise HTTPException(415, f'unsupported content type {media_type or "none"!r}: {SEND}')
    parser = MultiPartParser(request.headers, request.stream(), max_files=1, max_fields=4, max_part_size=1024)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise HTTPException(
            400 if not e.message.startswith('Too many') else 422,
            f'the multipart body cannot be read ({e.message}): {SEND}',
        ) from None
    try:
        extra = sorted(set(form.keys()) - {'file', 'label'})
        if extra:
            raise HTTPException(422, f'unexpected field {extra[0]!r}: {SEND}')
        file = form.get('file')
        if file is None:
            raise HTTPException(422, f"the correction has no 'file': {SEND}")
        if not isinstance(file, UploadFile):
            raise HTTPException(422, f"'file' holds text, not a file: {SEND}")
        if file.size is not None and file.size > max_bytes:
            raise HTTPException(
                413,
                f'the file holds {file.size} bytes, more than the {max_bytes} a correction may '
                '([serving] max_correction_bytes): send the drawing smaller',
            )
        return file.filename or 'file', await file.read(), form.get('label')
    finally:
        await form.close()


async def _row(request: Request, max_bytes: int, task) -> tuple[bytes, int, object]:
    "(the row as canonical JSON bytes, label, model input) of a row task's correction, or the 4xx saying what is wrong."
    media_type = request.headers.get('content-type', '').split(';')[0].strip().lower()
    if media_type != 'application/json':
        raise HTTPException(415, f'unsupported content type {media_type or "none"!r}: {ROW_SEND}')
    body = await request.body()
    if len(body) > max_bytes:
        raise HTTPException(
            413,
            f'the body holds {len(body)} bytes, more than the {max_bytes} a correction may ([serving] max_correction_bytes)',
        )
    try:
        obj = loads_json(body)
    except (ValueError, RecursionError) as e:
        raise HTTPException(400, f'the body is not valid JSON ({e}): {ROW_SEND}') from None
    if not isinstance(obj, dict):
        raise HTTPException(422, f'the body must be an object: {ROW_SEND}')
    extra = sorted(set(obj) - {'row', 'label'})
    if extra:
        raise HTTPException(422, f'unexpected field {extra[0]!r}: {ROW_SEND}')
    label = _label(obj.get('label'), task.classes, ROW_SEND)
    if 'row' not in obj:
        raise HTTPException(422, f"the correction has no 'row': {ROW_SEND}")
    try:
        x = prepare_row(task, obj['row'], 'row')  # the same checks as /predict
    except InputError as e:
        raise HTTPException(422, str(e)) from None
    row = {k: v for k, v in obj['row'].items() if v is not None}
    return canonical_json(row), label, x[None]


@router.post(
    '/corrections',
    status_code=201,
    response_model=CorrectionResponse,
    responses=_ERRORS,
)
async def correct(request: Request, settings: SettingsDep, model: MaybeModelDep):
    """Keep a drawing (a row, for a row task) with the class it really was: a raw item with its label and provenance (source demo, time, user
    agent, the model version that answered and its answer), added to the service-like evaluation set (never training)
    and, with `[annotate] feedback` on, to the feedback annotation project. No token: the demo page is public;
    `[serving] corrections = false` turns it off (403); `[serving] corrections_per_minute` bounds each client (429)."""
    serving = settings.serving
    if not serving.corrections:
        raise HTTPException(403, 'corrections are turned off on this server ([serving] corrections = false)')
    client = request.client.host if request.client else 'unknown'
    if wait := request.app.state.corrections_limit.wait(client):
        raise HTTPException(
            429,
            f'more than {serving.corrections_per_minute} corrections a minute from {client} '
            f'([serving] corrections_per_minute): try again in {math.ceil(wait)} s',
            headers={'Retry-After': str(math.ceil(wait))},
        )
    task, reader = request.app.state.task, request.app.state.reader
    if reader.kind == 'row':
        data, label, x = await _row(request, serving.max_correction_bytes, task)
        media_type = 'application/json'
    else:
        name, data, label = await _form(request, serving.max_correction_bytes)
        label = _label(label, task.classes)
        if not data:
            raise HTTPException(422, f"'file' ({name!r}) is empty: {SEND}")
        media_type = await request.app.state.workers.run(sniff_image, data)
        if media_type is None:
            raise HTTPException(422, f"'file' ({name!r}) is not an image ({KINDS}): {SEND}")
        try:  # the same checks as /predict
            x = await request.app.state.workers.run(reader.files, [(name, data)], serving)
        except InputError as e:
            raise HTTPException(422, str(e)) from None
    probs = model.predictor.probabilities(x)[0].tolist() if model else None
    answer = None if probs is None else max(range(len(probs)), key=probs.__getitem__)
    headers = dict(
        user_agent=request.headers.get('user-agent', '')[:300],
        label=label,
        model_version=model.version if model else None,
        model_answer=answer,
        probabilities=None if probs is None else [round(p, 4) for p in probs],
    )
    store = Store(settings.store_url)
    sha = await run_in_threadpool(add_correction, store, data, label, task, 'demo', headers, media_type)
    feedback = None  # the annotation project it joined, with [annotate] feedback on
    # begin-only-with: annotation
    if await run_in_threadpool(capture_feedback, settings, data, media_type, 'demo correction', probs, label):
        feedback = settings.annotate.feedback_project
    # end-only-with: annotation
    return CorrectionResponse(
        sha256=sha,
        label=label,
        model_version=headers['model_version'],
        model_answer=answer,
        feedback_project=feedback,
    )
