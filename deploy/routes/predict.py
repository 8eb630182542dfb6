"""The task's answer for its inputs: for images JSON pixel values, binary arrays or uploaded image files, for rows JSON
rows or CSV, as the task's reader (`deploy.inputs.reader_for`) takes them; its request body in the OpenAPI schema is
generated from the task (`deploy.schemas.describe_task`).

Only the model is costly here: bodies are parsed by orjson or read as arrays in place, checked once with numpy, and the
answer is encoded by orjson straight from the probabilities array into a prebuilt Response (the OpenAPI schema still
documents `PredictResponse`; a test checks every answer against it)."""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool  # only-with: annotation
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mlproj.settings import Serving
from mlproj.suggest import capture_unsure  # only-with: annotation
from mlproj.task import InputError, TooManyInputs, Unreadable, too_many

from .. import inputs
from ..schemas import ErrorDetail, PredictResponse

router = APIRouter(tags=['predict'])

FILE_FIELDS = ('files', 'file')
NPY, RAW = inputs.NPY, inputs.RAW
_ERRORS = {
    code: {'model': ErrorDetail, 'description': d}
    for code, d in [
        (
            400,
            'empty body, or a body that is not valid JSON, multipart or .npy (or .npy data not as long as its header says)',
        ),
        (408, 'the body did not arrive within [serving] body_timeout seconds; the connection is closed'),
        (413, 'the body, the number of images or rows, or their pixels, are over the limits in settings.ini [serving]'),
        (415, "a media type the task's inputs are not read from (see the request body)"),
        (
            422,
            "the body cannot be read as the task's inputs (see the request body: values out of range, booleans, "
            'strings, a wrong or ragged shape, an unreadable image; a row with unknown, missing or unreadable '
            'features); the detail says which and why',
        ),
        (503, 'no model is loaded, or [serving] max_concurrent requests are in progress; the detail says why'),
    ]
}


def _refuse(e: InputError) -> HTTPException:
    return HTTPException(413 if isinstance(e, TooManyInputs) else 422, str(e))


INLINE_BYTES = (
    256 * 1024
)  # larger JSON bodies are parsed in another process (a thread would hold the GIL, so the event loop, as long)
INLINE_IMAGES = 64  # larger batches run the model on a worker thread: the event loop reads the next request meanwhile


def _parse(
    parse,  # a reader of the task's: (body, max_batch) -> inputs
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
        raise HTTPException(400, f'the request body is empty: {request.app.state.reader.send}')
    return body


async def _from_json(request: Request, serving: Serving, parse):
    body = await _body(request)
    if len(body) <= INLINE_BYTES:
        return _parse(parse, body, serving.max_batch)
    request.app.state.metrics.large_bodies.inc()
    try:
        return await request.app.state.processes.run(parse, body, serving.max_batch)
    except Unreadable as e:
        raise HTTPException(400, str(e)) from None
    except InputError as e:
        raise _refuse(e) from None


async def _from_upload(request: Request, serving: Serving, read_files, send: str):
    parser = MultiPartParser(
        request.headers, request.stream(), max_files=serving.max_batch, max_fields=16, max_part_size=64 * 1024
    )
    try:
        form = await parser.parse()
    except MultiPartException as e:
        if e.message.startswith('Too many files'):
            raise _refuse(too_many(f'more than {serving.max_batch}', serving.max_batch)) from None
        raise HTTPException(400, f'the multipart body cannot be read ({e.message}): {send}') from None
    try:
        files = []
        for name, value in form.multi_items():
            if name not in FILE_FIELDS:
                raise HTTPException(422, f"unexpected field {name!r}: upload image files under the field name 'files'")
            if not isinstance(value, UploadFile):
                raise HTTPException(
                    422, f'field {name!r} holds text, not a file: upload image files (e.g. curl -F files=@image.png)'
                )
            files.append((value.filename or name, await value.read()))
    finally:
        await form.close()
    if not files:
        raise HTTPException(422, f'no files were uploaded: {send}')
    try:
        return await request.app.state.workers.run(read_files, files, serving)  # decoding is CPU work: bounded
    except InputError as e:
        raise _refuse(e) from None


def predictions_json(
    version: int,  # the model version that answered
    probs: np.ndarray,  # (n, classes) probabilities
    labels: list | None,  # the most probable class of each row, if already known (None: computed here)
    classes: tuple,  # the task's class names
) -> bytes:
    "The /predict answer as `PredictResponse` documents it, encoded by orjson from the array (float32 printed as float32)."
    labels = probs.argmax(1).tolist() if labels is None else labels
    return orjson.dumps(
        {
            'model_version': version,
            'classes': classes,
            'predictions': [
                {'label': label, 'class': classes[label], 'probabilities': p} for label, p in zip(labels, probs)
            ],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


class BinaryAnswer(Response):
    "The probabilities alone as little-endian float32, n x classes: raw bytes, or a .npy file (numpy.load reads it)."

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

    def __init__(self, version: int, probs: np.ndarray, labels: list | None, classes: tuple):
        self.status_code, self.background = 200, None
        self.body = predictions_json(version, np.ascontiguousarray(probs), labels, classes)
        self.raw_headers = [
            (b'content-length', b'%d' % len(self.body)),
            (b'content-type', b'application/json'),
            (b'x-model-version', b'%d' % version),
        ]


_BINARY_ANSWER = {'schema': {'type': 'string', 'format': 'binary'}}
_ANSWERS = {
    200: {
        'description': 'JSON by default. With `Accept: application/octet-stream`, the probabilities alone as raw '
        'little-endian float32, one per class for each input in the order sent (numpy.frombuffer(body, "<f4")'
        '.reshape(-1, number of classes)); with `Accept: application/x-npy`, the same as a .npy file (numpy.load). '
        'The version is in the X-Model-Version header; the class is the index of the largest probability.',
        'content': {NPY: _BINARY_ANSWER, RAW: _BINARY_ANSWER},
    },
    **_ERRORS,
}


@router.post('/predict', response_model=PredictResponse, responses=_ANSWERS)
async def predict(request: Request):
    "The class and the probability of each class for one or more inputs, in the order sent."
    # the model, not a dependency: FastAPI's dependency resolution cost more per request than the model's inference
    state = request.app.state
    model = state.model  # read once: a hot reload swaps the attribute, this request keeps the model it took
    if model is None:
        raise HTTPException(503, state.model_error)
    media_type, length, chunked, accept = _headers(request.scope['headers'])
    reader = state.reader
    if length == b'0' or (length is None and not chunked):
        raise HTTPException(400, f'the request body is empty: {reader.send}')
    settings = state.settings
    serving = settings.serving
    if media_type == b'application/json' or media_type.endswith(b'+json'):
        x = await _from_json(request, serving, reader.json)
    elif media_type in reader.binary:
        x = _parse(reader.binary[media_type], await _body(request), serving.max_batch)
    elif media_type == b'multipart/form-data' and reader.files is not None:
        x = await _from_upload(request, serving, reader.files, reader.send)
    else:
        raise HTTPException(415, f'unsupported content type {media_type.decode("latin-1") or "none"!r}: {reader.send}')
    probs = (
        await state.gather.probabilities(model, x)
        if len(x) <= INLINE_IMAGES
        else await state.workers.run(model.predictor.probabilities, x)
    )  # a large batch: off the event loop
    # begin-only-with: annotation
    if settings.annotate.feedback:
        await run_in_threadpool(capture_unsure, settings, x, probs)  # opt-in: [annotate] feedback
    # end-only-with: annotation
    labels = probs.argmax(1).tolist()
    state.metrics.predicted(labels)
    if accept and (fmt := answer_format(accept.decode('latin-1'))):
        return BinaryAnswer(model.version, probs, fmt == NPY)
    return Answer(model.version, probs, labels, state.task.classes)
