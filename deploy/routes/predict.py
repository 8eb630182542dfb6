"""Digits from images: JSON pixel counts or uploaded image files."""
from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mlproj.annotate import capture_unsure
from mlproj.preprocess import InputError
from mlproj.settings import Serving

from ..deps import ModelDep, SettingsDep
from ..inputs import TooManyImages, images_batch, pixels_batch, too_many
from ..schemas import ErrorDetail, PixelsRequest, PredictResponse

router = APIRouter(tags=['predict'])

FILE_FIELDS = ('files', 'file')
SEND = ('send JSON (Content-Type: application/json) as {"pixels": ...}, '
        "or image files as multipart/form-data under the field 'files'")

_FILES = {'type': 'array', 'items': {'type': 'string', 'format': 'binary'}, 'minItems': 1,
          'description': 'PNG, JPEG, TIFF or any image Pillow reads, one digit each, dark on light or light on dark; '
                         'EXIF orientation is applied, 16-bit and float images are scaled by their own range. '
                         'Refused with 422: a file that is not an image, empty, damaged or truncated, larger than '
                         '[serving] max_image_side a side or max_image_pixels in all, or of one flat colour (no digit '
                         'in it: a 1x1 image is one). Refused with 413: more files than max_batch or more pixels '
                         'than max_request_pixels in one request.'}
_BODY = {'required': True, 'content': {
    'application/json': {'schema': PixelsRequest.model_json_schema()},
    'multipart/form-data': {'schema': {'type': 'object', 'required': ['files'], 'properties': {'files': _FILES}}}}}
_ERRORS = {code: {'model': ErrorDetail, 'description': d} for code, d in [
    (400, 'empty body, or a body that is not valid JSON or multipart'),
    (408, 'the body did not arrive within [serving] body_timeout seconds; the connection is closed'),
    (413, 'the body, the number of images or their pixels are over the limits in settings.ini [serving]'),
    (415, 'neither JSON nor multipart/form-data'),
    (422, 'the pixels or a file cannot be read as a digit (see the request body: counts outside 0..16, booleans, '
          'strings, a wrong or ragged shape, an unreadable or flat image); the detail says which and why'),
    (503, 'no model is loaded, or [serving] max_concurrent requests are in progress; the detail says why')]}


def _refuse(e: InputError) -> HTTPException:
    return HTTPException(413 if isinstance(e, TooManyImages) else 422, str(e))


INLINE_BYTES = 32 * 1024 # JSON bodies larger than this are parsed on a worker thread, not on the event loop


def _parse_json(body: bytes, max_batch: int):
    try: obj = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise HTTPException(400, f'the body is not valid JSON ({e}): {SEND}') from None
    try: return pixels_batch(obj, max_batch, body)
    except InputError as e: raise _refuse(e) from None


async def _from_json(request: Request, serving: Serving):
    body = await request.body()
    if not body: raise HTTPException(400, f'the request body is empty: {SEND}')
    if len(body) <= INLINE_BYTES: return _parse_json(body, serving.max_batch)
    return await request.app.state.workers.run(_parse_json, body, serving.max_batch)


async def _from_upload(request: Request, serving: Serving):
    parser = MultiPartParser(request.headers, request.stream(), max_files=serving.max_batch, max_fields=16,
                             max_part_size=64 * 1024)
    try: form = await parser.parse()
    except MultiPartException as e:
        if e.message.startswith('Too many files'):
            raise _refuse(too_many(f'more than {serving.max_batch}', serving.max_batch)) from None
        raise HTTPException(400, f'the multipart body cannot be read ({e.message}): {SEND}') from None
    try:
        files = []
        for name, value in form.multi_items():
            if name not in FILE_FIELDS:
                raise HTTPException(422, f"unexpected field {name!r}: upload image files under the field name 'files'")
            if not isinstance(value, UploadFile):
                raise HTTPException(422, f'field {name!r} holds text, not a file: upload image files '
                                         '(e.g. curl -F files=@digit.png)')
            files.append((value.filename or name, await value.read()))
    finally: await form.close()
    if not files: raise HTTPException(422, f'no files were uploaded: {SEND}')
    try: return await request.app.state.workers.run(images_batch, files, serving) # decoding is CPU work: bounded
    except InputError as e: raise _refuse(e) from None


@router.post('/predict', response_model=PredictResponse, openapi_extra={'requestBody': _BODY}, responses=_ERRORS)
async def predict(request: Request, model: ModelDep, settings: SettingsDep):
    "The digit and the probability of each class for one or more images, in the order sent."
    media_type = request.headers.get('content-type', '').split(';')[0].strip().lower()
    length = request.headers.get('content-length')
    if length == '0' or (length is None and 'transfer-encoding' not in request.headers):
        raise HTTPException(400, f'the request body is empty: {SEND}')
    if media_type == 'application/json' or media_type.endswith('+json'):
        x = await _from_json(request, settings.serving)
    elif media_type == 'multipart/form-data': x = await _from_upload(request, settings.serving)
    else: raise HTTPException(415, f"unsupported content type {media_type or 'none'!r}: {SEND}")
    probs = model.predictor.probabilities(x) if len(x) <= 64 else \
        await request.app.state.workers.run(model.predictor.probabilities, x) # a large batch: off the event loop
    if settings.annotate.feedback: await run_in_threadpool(capture_unsure, settings, x, probs) # opt-in: [annotate] feedback
    predictions = [dict(label=label, probabilities=p) for label, p in zip(probs.argmax(1).tolist(), probs.tolist())]
    return dict(model_version=model.version, predictions=predictions)
