"""Request and response bodies of the API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlproj.bodies import image_request_body

__all__ = [
    'CorrectionResponse',
    'ErrorDetail',
    'Health',
    'LeaderboardResponse',
    'ModelRow',
    'Models',
    'PredictResponse',
    'Prediction',
    'Ready',
    'ScoreRefusal',
    'ScoreResponse',
    'Submission',
    'api_routes',
    'describe_task',
    'document_refusals',
    'plain_validation_error',
    'predict_body',
]


class ErrorDetail(BaseModel):
    "Every 4xx and 503 answer: what went wrong and what to send instead."

    detail: str


class Health(BaseModel):
    status: Literal['ok'] = 'ok'


class Ready(BaseModel):
    ready: bool = True
    model_version: int = Field(description='the registered model version being served')


class Prediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    label: int = Field(ge=0, description='the index of the most probable class')
    class_: str = Field(alias='class', description="that class's name")
    probabilities: list[float] = Field(description='one per class, in the order of `classes`; they sum to 1')


class PredictResponse(BaseModel):
    model_version: int
    classes: list[str] = Field(description="the task's class names, index = label: the order of `probabilities`")
    predictions: list[Prediction] = Field(description='one per input, in the order sent')


class ModelRow(BaseModel):
    version: int
    registered: str
    accuracy: float
    macro_f1: float
    accepted: bool = Field(description='passed the acceptance criteria in settings.ini')
    dataset_version: str
    aliases: list[str]
    serving: bool = Field(description='this version is the one /predict uses')


class Models(BaseModel):
    serving: int | None = Field(description='the version /predict uses; null when no model is loaded')
    reload_error: str | None = Field(
        None, description='why the version the served reference now names was refused (the old one keeps serving)'
    )
    aliases: dict[str, int]
    versions: list[ModelRow]


class CorrectionResponse(BaseModel):
    "A correction kept: the raw item it became and what the model had answered."

    sha256: str = Field(
        description='the raw item the drawing or row is stored as (content-addressed: the same item twice is one item)'
    )
    label: int = Field(ge=0, description='the class it was (its index), as sent')
    model_version: int | None = Field(description='the model version that read the drawing; null when none is loaded')
    model_answer: int | None = Field(description="that model's answer for the item")
    feedback_project: str | None = Field(
        description='the annotation project it was added to ([annotate] feedback on), else null'
    )


_ERROR = {'application/json': {'schema': {'$ref': '#/components/schemas/ErrorDetail'}}}
_BUSY = '[serving] max_concurrent requests are in progress: retry in a moment (Retry-After)'
_AUTH = {
    '401': 'no `Authorization: Bearer <token>` header',
    '403': 'the token is not valid for this server, or its role does not allow this',
    '503': 'no API token is configured on this server (MLPROJ_API_TOKENS or [serving] tokens_file)',
}


def api_routes(routes):
    "Every APIRoute under `routes`, inside included routers too (FastAPI wraps each included router in one route)."
    from fastapi.routing import APIRoute

    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, 'original_router'):
            yield from api_routes(r.original_router.routes)


def _calls(dependant):
    "Every dependency function a route runs, however deeply nested."
    yield dependant.call
    for d in dependant.dependencies:
        yield from _calls(d)


async def plain_validation_error(request, exc):
    "FastAPI's request validation errors as every other refusal: one `detail` string saying what to fix."
    from fastapi.responses import JSONResponse

    parts = [f'{".".join(map(str, e.get("loc", ())))}: {e.get("msg", "")}' for e in exc.errors()]
    return JSONResponse({'detail': 'the request does not match the schema: ' + '; '.join(parts)}, 422)


def document_refusals(app, exempt: tuple = ('/health',)):
    "Make `app`'s OpenAPI schema list the answers any route can give besides its own: 503 when busy, 408 for a slow body, 401/403/503 behind a token."
    from fastapi.exceptions import RequestValidationError

    from .auth import require_token

    app.add_exception_handler(RequestValidationError, plain_validation_error)
    built = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = built()
        schema.setdefault('components', {}).setdefault('schemas', {}).setdefault(
            'ErrorDetail', ErrorDetail.model_json_schema()
        )
        for route in api_routes(app.routes):
            if not route.include_in_schema:
                continue
            extra = {} if route.path in exempt else {'503': _BUSY}
            if require_token in set(_calls(route.dependant)):
                extra.update(_AUTH)
            for method in route.methods:
                op = schema['paths'].get(route.path_format, {}).get(method.lower())
                if op is None:
                    continue
                more = {
                    **extra,
                    **(
                        {
                            '400': 'the body cannot be parsed (not valid JSON or multipart, not UTF-8)',
                            '408': '[serving] body_timeout passed before the body arrived; the connection is closed',
                        }
                        if 'requestBody' in op
                        else {}
                    ),
                }
                if '422' in op['responses']:  # FastAPI's own validation errors answer with ErrorDetail too
                    op['responses']['422']['content'] = _ERROR
                for code, why in more.items():
                    op['responses'].setdefault(code, {'description': why, 'content': _ERROR})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
    return app


class ScoreRefusal(ErrorDetail):
    "A predictions file that cannot be scored: `errors` lists every problem, each with its line number."

    errors: list[str] = Field([], description='one sentence per problem, e.g. "line 12: unknown item id \'3fa2...\'"')


class Submission(BaseModel):
    id: int
    rank: int = Field(description='its place on the leaderboard of its dataset version (1: the best)')
    submitted: str
    name: str
    dataset_version: str
    label: str = Field(description='benchmark or service-like: what kind of set the version is')
    n: int = Field(description='items scored')
    accuracy: float
    macro_f1: float
    ece: float | None = Field(description='expected calibration error; null when the file gave no confidence column')
    file_sha256: str


class ScoreResponse(BaseModel):
    submission: Submission
    metrics: dict[str, Any] = Field(
        description='what the evaluation job records for a model: accuracy, macro_f1, per-class '
        'recall and precision, confusion, ece and reliability bins (with confidences), the most '
        'confident mistakes, and accuracy by slice for a service-like version'
    )
    slices: dict[str, Any] = Field(description='accuracy by slice: {"set": {...}, "source": {...}, ...}')
    report_html: str | None = Field(
        None, description='the report as an HTML fragment with its figures inline (when asked with report=true)'
    )


class LeaderboardResponse(BaseModel):
    dataset_version: str
    submissions: list[Submission] = Field(description='best first')


# ---------------------------------------------------------------- the task's part of the schema

_CSV = 'text/csv'
_LIMITS = 'more than [serving] max_batch inputs are refused with 413'
_FILES = (  # what an uploaded file may be
    "PNG, JPEG, TIFF or any image Pillow reads, one input each, read by the task's own preprocessing. "
    'Refused with 422: a file that is not an image, empty, damaged or truncated, larger than '
    '[serving] max_image_side a side or max_image_pixels in all, or one the preprocessing cannot read. Refused with '
    '413: more files than max_batch or more pixels than max_request_pixels in one request.'
)


def _image_body(task) -> dict:
    "An image task's request body: JSON arrays of its input's shape (one or a list, flat or not), .npy, raw bytes, files."
    inp = task.input
    shape, flat = list(inp.shape), 1
    for d in shape:
        flat *= d
    value = {'type': 'number', 'minimum': inp.low, 'maximum': inp.high}

    def nested(dims):
        if not dims:
            return value
        return {'type': 'array', 'items': nested(dims[1:]), 'minItems': dims[0], 'maxItems': dims[0]}

    dims = 'x'.join(map(str, shape))
    one_flat = {**nested([flat]), 'title': f'one image as {flat} values'}
    one = {**nested(shape), 'title': f'one image as an array of {dims}'}
    pixels = {
        'oneOf': [
            one_flat,
            one,
            {'type': 'array', 'items': one_flat, 'minItems': 1, 'title': f'a list of images of {flat} values'},
            {'type': 'array', 'items': one, 'minItems': 1, 'title': f'a list of images of {dims}'},
        ],
        'description': f'the model input of task {task.name!r} ({inp.describe()}): one image or a list of images; '
        f'values are numbers {inp.low:g}..{inp.high:g} (never booleans); {_LIMITS}',
    }
    return image_request_body(
        pixels,
        _FILES,
        npy=f'numpy.save of an array shaped like the JSON pixels ({flat}, {dims}, n x {flat} or '
        f'n x {dims}), any integer or float dtype, values {inp.low:g}..{inp.high:g}. Refused with 422: another '
        f'shape or dtype, a value out of range; with 400: not a .npy file; {_LIMITS}.',
        raw=f'raw unsigned bytes, one value each, {flat} per image ({dims}, C order), images one '
        f'after the other (numpy: values.astype("uint8").tobytes()). Refused with 422: a length not a '
        f'multiple of {flat}, a value outside {inp.low:g}..{inp.high:g}; {_LIMITS}.',
    )


def _row_body(task) -> dict:
    'A row task\'s request body: JSON rows (one object, {"rows": [...]}, a list of objects) and CSV with a header.'
    inp = task.input
    units = inp.units or ('',) * len(inp.features)
    props = {}
    for f, u in zip(inp.features, units):
        text = {
            'type': 'string',
            'pattern': r'^\s*[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?\s*' + (f'({u})?' if u else '') + r'\s*$',
        }
        props[f] = {
            'oneOf': [{'type': 'number'}, text],
            'description': f'{f}' + (f', in {u}: a number, or a string "12.5 {u}"' if u else ': a number'),
        }
    row = {
        'type': 'object',
        'title': f'one row of task {task.name!r}',
        'required': list(inp.features),
        'additionalProperties': False,
        'properties': props,
    }
    names = ', '.join(f'{f} ({u})' if u else f for f, u in zip(inp.features, units))
    return {
        'required': True,
        'content': {
            'application/json': {
                'schema': {
                    'oneOf': [
                        row,
                        {
                            'type': 'object',
                            'title': 'rows',
                            'required': ['rows'],
                            'additionalProperties': False,
                            'properties': {'rows': {'type': 'array', 'items': row, 'minItems': 1}},
                        },
                        {'type': 'array', 'items': row, 'minItems': 1, 'title': 'a list of rows'},
                    ],
                    'description': f'rows of task {task.name!r}: {len(inp.features)} features, {names}; a feature '
                    f'unknown to the task, a value that is neither a number nor a "number unit" string, or a row the '
                    f"task's preprocessing cannot read is refused with 422 naming it; {_LIMITS}",
                }
            },
            _CSV: {
                'schema': {
                    'type': 'string',
                    'description': f'CSV (UTF-8): a header line naming the columns ({", ".join(inp.features)}, any '
                    'order), then one row a line; a cell is a number or "number unit". Refused with 422: an unknown '
                    f'column, a line with another number of cells, a row the task cannot read; {_LIMITS}.',
                }
            },
        },
    }


def predict_body(
    task,
    reader=None,  # the server's `deploy.inputs.Reader` of the task: its `request_body` when the task brings its own
) -> dict:
    "The OpenAPI request body of /predict for `task`: the one the task's own readers document, else made from its input spec."
    if reader is not None and reader.request_body is not None:
        return reader.request_body
    return _row_body(task) if task.input.kind == 'row' else _image_body(task)


def describe_task(app, task, reader=None):
    "Make `app`'s OpenAPI schema say the task: /predict's request body, the classes of its answers, the labels of corrections."
    built = app.openapi
    n = len(task.classes)
    classes = [str(c) for c in task.classes]

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = built()
        schema['info']['summary'] = f'Task {task.name!r}: {task.title or task.input.describe()}'
        op = schema['paths'].get('/predict', {}).get('post')
        if op is not None:
            op['requestBody'] = predict_body(task, reader)
        parts = schema.get('components', {}).get('schemas', {})
        if 'Prediction' in parts:
            p = parts['Prediction']['properties']
            p['label']['maximum'] = n - 1
            p['class'] = {**p['class'], 'enum': classes}
            p['probabilities'] = {**p['probabilities'], 'minItems': n, 'maxItems': n}
        if 'PredictResponse' in parts:
            c = parts['PredictResponse']['properties']['classes']
            c['items'] = {'type': 'string', 'enum': classes}
            c['minItems'] = c['maxItems'] = n
        if 'CorrectionResponse' in parts:
            parts['CorrectionResponse']['properties']['label']['maximum'] = n - 1
        op = schema['paths'].get('/corrections', {}).get('post')
        if op is not None:
            op['requestBody'] = correction_body(task)
        return schema

    app.openapi = openapi
    return app


KINDS = 'PNG, JPEG, GIF, WebP or BMP'  # the image files a correction may be


def correction_body(task) -> dict:
    "The OpenAPI request body of /corrections for `task`: a drawing and its label, or a row (JSON) and its label."
    n = len(task.classes)
    label = {
        'type': 'integer',
        'minimum': 0,
        'maximum': n - 1,
        'description': 'the class it was, as its index: ' + ', '.join(f'{i} {c}' for i, c in enumerate(task.classes)),
    }
    if task.input.kind == 'row':
        row = predict_body(task)['content']['application/json']['schema']['oneOf'][0]
        schema = {
            'type': 'object',
            'required': ['row', 'label'],
            'additionalProperties': False,
            'properties': {'row': row, 'label': label},
        }
        return {'required': True, 'content': {'application/json': {'schema': schema}}}
    return {
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
                            'description': f'the drawing, one input ({KINDS}; the demo page sends its canvas as PNG), '
                            'at most [serving] max_correction_bytes',
                        },
                        'label': label,
                    },
                }
            }
        },
    }
