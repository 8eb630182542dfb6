"""Digits from images: JSON pixel counts, binary arrays of counts, or uploaded image files.

Only the model is costly here: bodies are parsed by orjson or read as arrays in place, checked once with numpy, and the
answer is encoded by orjson straight from the probabilities array into a prebuilt Response (the OpenAPI schema still
documents `PredictResponse`; a test checks every answer against it)."""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mlproj.preprocess import InputError
from mlproj.settings import Serving
from mlproj.suggest import capture_unsure

from ..inputs import TooManyImages, Unreadable, images_batch, json_batch, npy_batch, raw_batch, too_many
from ..schemas import ErrorDetail, PixelsRequest, PredictResponse

router = APIRouter(tags=['predict'])

FILE_FIELDS = ('files', 'file')
NPY, RAW = 'application/x-npy', 'application/octet-stream'
_NPY, _RAW = NPY.encode(), RAW.encode()  # as _headers gives media types
SEND = (
    'send JSON (Content-Type: application/json) as {"pixels": ...}, '
    "image files as multipart/form-data under the field 'files', "
    f'an array as a .npy file ({NPY}) or raw uint8 counts, 64 bytes an image ({RAW})'
)

_FILES = {
    'type': 'array',
    'items': {'type': 'string', 'format': 'binary'},
    'minItems': 1,
    'description': 'PNG, JPEG, TIFF or any image Pillow reads, one digit each, dark on light or light on dark; '
    'EXIF orientation is applied, 16-bit and float images are scaled by their own range. '
    'Refused with 422: a file that is not an image, empty, damaged or truncated, larger than '
    '[serving] max_image_side a side or max_image_pixels in all, or of one flat colour (no digit '
    'in it: a 1x1 image is one). Refused with 413: more files than max_batch or more pixels '
    'than max_request_pixels in one request.',
}
_LIMITS = 'more than [serving] max_batch images are refused with 413'
_BODY = {
    'required': True,
    'content': {
        'application/json': {'schema': PixelsRequest.model_json_schema()},
        'multipart/form-data': {'schema': {'type': 'object', 'required': ['files'], 'properties': {'files': _FILES}}},
        NPY: {
            'schema': {
                'type': 'string',
                'format': 'binary',
                'description': 'The fastest form for batches with numpy clients: numpy.save of an array of counts 0..16 shaped like the JSON '
                'pixels (64, 8x8, n x 64 or n x 8 x 8), of any integer or float dtype. Refused with 422: booleans, strings, '
                f'objects, another shape, a value outside 0..16 (NaN, infinities); with 400: not a .npy file (format 1.0 or 2.0) '
                f'or data not as long as its header says; {_LIMITS}.',
            }
        },
        RAW: {
            'schema': {
                'type': 'string',
                'format': 'binary',
                'description': 'The fastest form of all: raw unsigned bytes, one count 0..16 each, 64 per image row by row, images one after '
                f'the other (numpy: counts.astype("uint8").tobytes()). Refused with 422: a length not a multiple of 64 (empty '
                f'is 400), a byte over 16; {_LIMITS}.',
            }
        },
    },
}
_ERRORS = {
    code: {'model': ErrorDetail, 'description': d}
    for code, d in [
        (
            400,
            'empty body, or a body that is not valid JSON, multipart or .npy (or .npy data not as long as its header says)',
        ),
        (408, 'the body did not arrive within [serving] body_timeout seconds; the connection is closed'),
        (413, 'the body, the number of images or their pixels are over the limits in settings.ini [serving]'),
        (415, 'none of JSON, multipart/form-data, application/x-npy, application/octet-stream'),
        (
            422,
            'the pixels, the array or a file cannot be read as a digit (see the request body: counts outside 0..16, '
            'booleans, strings, a wrong or ragged shape, a raw body not 64 bytes an image, an unreadable or flat image); '
            'the detail says which and why',
        ),
        (503, 'no model is loaded, or [serving] max_concurrent requests are in progress; the detail says why'),
    ]
}


def _refuse(e: InputError) -> HTTPException:
    return HTTPException(413 if isinstance(e, TooManyImages) else 422, str(e))


INLINE_BYTES = (
    256 * 1024
)  # larger JSON bodies are parsed in another process (a thread would hold the GIL, so the event loop, as long)
INLINE_IMAGES = 64  # larger batches run the model on a worker thread: the event loop reads the next request meanwhile


def _parse(
    parse,  # json_batch, raw_batch or npy_batch
    body: bytes,
    max_batch: int,
):
    "The model inputs `parse` reads from `body`, or the HTTPException that says what to fix."
    try:
        return parse(body, max_batch)
    except Unreadable as e:
        raise HTTPException(400, str(e)) from None  # each reader says how to send its format
    except InputError as e:
        raise _refuse(e) from None


async def _body(request: Request) -> bytes:
    body = await request.body()
    if not body:
        raise HTTPException(400, f'the request body is empty: {SEND}')
    return body


async def _from_json(request: Request, serving: Serving):
    body = await _body(request)
    if len(body) <= INLINE_BYTES:
        return _parse(json_batch, body, serving.max_batch)
    request.app.state.metrics.large_bodies.inc()
    try:
        return await request.app.state.processes.run(json_batch, body, serving.max_batch)
    except Unreadable as e:
        raise HTTPException(400, str(e)) from None
    except InputError as e:
        raise _refuse(e) from None


async def _from_upload(request: Request, serving: Serving):
    parser = MultiPartParser(
        request.headers, request.stream(), max_files=serving.max_batch, max_fields=16, max_part_size=64 * 1024
    )
    try:
        form = await parser.parse()
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
                raise HTTPException(
                    422, f'field {name!r} holds text, not a file: upload image files (e.g. curl -F files=@digit.png)'
                )
            files.append((value.filename or name, await value.read()))
    finally:
        await form.close()
    if not files:
        raise HTTPException(422, f'no files were uploaded: {SEND}')
    try:
        return await request.app.state.workers.run(images_batch, files, serving)  # decoding is CPU work: bounded
    except InputError as e:
        raise _refuse(e) from None


def predictions_json(
    version: int,  # the model version that answered
    probs: np.ndarray,  # (n, 10) probabilities
    labels: list | None = None,  # the most probable class of each row, if already known
) -> bytes:
    "The /predict answer as `PredictResponse` documents it, encoded by orjson from the array (float32 printed as float32)."
    labels = probs.argmax(1).tolist() if labels is None else labels
    return orjson.dumps(
        {
            'model_version': version,
            'predictions': [{'label': label, 'probabilities': p} for label, p in zip(labels, probs)],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


class BinaryAnswer(Response):
    "The probabilities alone as little-endian float32, n x 10: raw bytes, or a .npy file (numpy.load reads it)."

    def __init__(self, version: int, probs: np.ndarray, npy: bool):
        self.status_code, self.background = 200, None
        probs = np.ascontiguousarray(probs, dtype='<f4')
        self.body = _npy_header(probs.shape) + probs.tobytes() if npy else probs.tobytes()
        self.raw_headers = [
            (b'content-length', b'%d' % len(self.body)),
            (b'content-type', (NPY if npy else RAW).encode()),
            (b'x-model-version', b'%d' % version),
        ]


def _npy_header(shape: tuple) -> bytes:
    "The header numpy.save writes (format 1.0) for a C-ordered little-endian float32 array of `shape`."
    d = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"
    d += ' ' * (63 - (10 + len(d)) % 64) + '\n'  # the header's length is a multiple of 64, ending in a newline
    return b'\x93NUMPY\x01\x00' + len(d).to_bytes(2, 'little') + d.encode('latin1')


def _headers(raw: list) -> tuple[bytes, bytes | None, bool, bytes]:
    "The media type (lower-case, no parameters), Content-Length, whether Transfer-Encoding is set, and Accept: one pass over the raw headers (ASGI gives their names in lower case; the first of a repeated header counts, as in Starlette's Headers)."
    ctype = length = accept = None
    chunked = False
    for name, value in raw:
        if name == b'content-type':
            if ctype is None:
                ctype = value
        elif name == b'content-length':
            if length is None:
                length = value
        elif name == b'accept':
            if accept is None:
                accept = value
        elif name == b'transfer-encoding':
            chunked = True
    return (ctype.split(b';', 1)[0].strip().lower() if ctype else b''), length, chunked, accept or b''


def answer_format(accept: str) -> str | None:
    "NPY or RAW when the Accept header asks for one of them (before any JSON type), else None: JSON."
    for part in accept.split(','):
        t = part.split(';')[0].strip().lower()
        if t in (NPY, RAW):
            return t
        if t in ('application/json', '*/*', 'application/*'):
            return None
    return None


class Answer(Response):
    "The /predict answer, its headers written out: no per-item validation of our own output (`predictions_json` fixes its shape)."

    media_type = 'application/json'

    def __init__(self, version: int, probs: np.ndarray, labels: list | None = None):
        self.status_code, self.background = 200, None
        self.body = predictions_json(version, np.ascontiguousarray(probs), labels)
        self.raw_headers = [
            (b'content-length', b'%d' % len(self.body)),
            (b'content-type', b'application/json'),
            (b'x-model-version', b'%d' % version),
        ]


_BINARY_ANSWER = {'schema': {'type': 'string', 'format': 'binary'}}
_ANSWERS = {
    200: {
        'description': 'JSON by default. With `Accept: application/octet-stream`, the probabilities alone as raw '
        'little-endian float32, 10 per image in the order sent (numpy.frombuffer(body, "<f4").reshape(-1, 10)); '
        'with `Accept: application/x-npy`, the same as a .npy file (numpy.load). The version is in '
        'the X-Model-Version header; the digit is the index of the largest probability.',
        'content': {NPY: _BINARY_ANSWER, RAW: _BINARY_ANSWER},
    },
    **_ERRORS,
}


@router.post('/predict', response_model=PredictResponse, openapi_extra={'requestBody': _BODY}, responses=_ANSWERS)
async def predict(request: Request):
    "The digit and the probability of each class for one or more images, in the order sent."
    # the model, not a dependency: FastAPI's dependency resolution cost more per request than the model's inference
    state = request.app.state
    model = state.model  # read once: a hot reload swaps the attribute, this request keeps the model it took
    if model is None:
        raise HTTPException(503, state.model_error)
    media_type, length, chunked, accept = _headers(request.scope['headers'])
    if length == b'0' or (length is None and not chunked):
        raise HTTPException(400, f'the request body is empty: {SEND}')
    settings = state.settings
    serving = settings.serving
    if media_type == b'application/json' or media_type.endswith(b'+json'):
        x = await _from_json(request, serving)
    elif media_type == _RAW:
        x = _parse(raw_batch, await _body(request), serving.max_batch)
    elif media_type == _NPY:
        x = _parse(npy_batch, await _body(request), serving.max_batch)
    elif media_type == b'multipart/form-data':
        x = await _from_upload(request, serving)
    else:
        raise HTTPException(415, f'unsupported content type {media_type.decode("latin-1") or "none"!r}: {SEND}')
    probs = (
        await state.gather.probabilities(model, x)
        if len(x) <= INLINE_IMAGES
        else await state.workers.run(model.predictor.probabilities, x)
    )  # a large batch: off the event loop
    if settings.annotate.feedback:
        await run_in_threadpool(capture_unsure, settings, x, probs)  # opt-in: [annotate] feedback
    labels = probs.argmax(1).tolist()
    state.metrics.predicted(labels)
    if accept and (fmt := answer_format(accept.decode('latin-1'))):
        return BinaryAnswer(model.version, probs, fmt == NPY)
    return Answer(model.version, probs, labels)
