"""Corrections from the demo page: "it was a 7" turns a drawing into a labelled raw item, so people's drawings become data.

A correction is kept through the raw store (`mlproj.servicelike.add_correction`: content-addressed, with provenance),
joins the service-like evaluation set the next time it is built (never training), and, with `[annotate] feedback`
on, the feedback annotation project (`mlproj.suggest.capture_feedback`)."""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mlproj.collect import sniff_image
from mlproj.preprocess import InputError
from mlproj.servicelike import add_correction
from mlproj.store import Store
from mlproj.suggest import capture_feedback

from ..deps import MaybeModelDep, SettingsDep
from ..inputs import images_batch
from ..schemas import CorrectionResponse, ErrorDetail

router = APIRouter(tags=['corrections'])

SEND = (
    "send multipart/form-data with the drawing under the field 'file' and the digit it was (0-9) under 'label', "
    'e.g. curl -F file=@digit.png -F label=7'
)
KINDS = 'PNG, JPEG, GIF, WebP or BMP'
_BODY = {
    'required': True,
    'content': {
        'multipart/form-data': {
            'schema': {
                'type': 'object',
                'required': ['file', 'label'],
                'properties': {
                    'file': {
                        'type': 'string',
                        'format': 'binary',
                        'description': f'the drawing, one digit ({KINDS}; the demo page sends its canvas as PNG), at most '
                        '[serving] max_correction_bytes',
                    },
                    'label': {'type': 'integer', 'minimum': 0, 'maximum': 9, 'description': 'the digit it was'},
                },
            }
        }
    },
}
_ERRORS = {
    code: {'model': ErrorDetail, 'description': d}
    for code, d in [
        (400, 'a body that is not valid multipart'),
        (403, 'corrections are turned off on this server ([serving] corrections = false)'),
        (413, 'the file is larger than [serving] max_correction_bytes, or over the image limits of [serving]'),
        (415, 'not multipart/form-data'),
        (
            429,
            'more than [serving] corrections_per_minute from this client address; Retry-After says when to try again',
        ),
        (
            422,
            "no 'label', a label that is not a digit 0-9, no 'file', a file that is not an image or holds no digit, "
            'or an unexpected field; the detail says which',
        ),
    ]
}


def _label(value) -> int:
    if value is None:
        raise HTTPException(422, f"the correction has no 'label': say which digit it was. {SEND}")
    if not isinstance(value, str):
        raise HTTPException(422, "'label' must be a form field holding a digit 0-9, not a file")
    v = value.strip()
    if not (v.isascii() and v.isdigit()) or int(v) > 9:
        raise HTTPException(422, f'label must be one digit from 0 to 9, not {value[:20]!r}')
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


@router.post(
    '/corrections',
    status_code=201,
    response_model=CorrectionResponse,
    openapi_extra={'requestBody': _BODY},
    responses=_ERRORS,
)
async def correct(request: Request, settings: SettingsDep, model: MaybeModelDep):
    """Keep a drawing with the digit it really was: a raw item with its label and provenance (source demo, time, user
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
    name, data, label = await _form(request, serving.max_correction_bytes)
    label = _label(label)
    if not data:
        raise HTTPException(422, f"'file' ({name!r}) is empty: {SEND}")
    media_type = await request.app.state.workers.run(sniff_image, data)
    if media_type is None:
        raise HTTPException(422, f"'file' ({name!r}) is not an image ({KINDS}): {SEND}")
    try:
        x = await request.app.state.workers.run(images_batch, [(name, data)], serving)  # the same checks as /predict
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
    sha = await run_in_threadpool(add_correction, store, data, label, 'demo', headers, media_type)
    kept = await run_in_threadpool(capture_feedback, settings, data, media_type, 'demo correction', probs, label)
    return CorrectionResponse(
        sha256=sha,
        label=label,
        model_version=headers['model_version'],
        model_answer=answer,
        feedback_project=settings.annotate.feedback_project if kept else None,
    )
