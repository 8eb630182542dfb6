"""Request and response bodies of the API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

__all__ = [
    'PIXELS_SCHEMA',
    'CorrectionResponse',
    'ErrorDetail',
    'Health',
    'LeaderboardResponse',
    'ModelRow',
    'Models',
    'PixelsRequest',
    'PredictResponse',
    'Prediction',
    'Ready',
    'ScoreRefusal',
    'ScoreResponse',
    'Submission',
    'api_routes',
    'document_refusals',
    'plain_validation_error',
]


class ErrorDetail(BaseModel):
    "Every 4xx and 503 answer: what went wrong and what to send instead."

    detail: str


class Health(BaseModel):
    status: Literal['ok'] = 'ok'


class Ready(BaseModel):
    ready: bool = True
    model_version: int = Field(description='the registered model version being served')


_COUNT = {'type': 'number', 'minimum': 0, 'maximum': 16}  # a number, never a boolean or a string
_FLAT = {'type': 'array', 'items': _COUNT, 'minItems': 64, 'maxItems': 64, 'title': 'one image as 64 counts'}
_GRID = {
    'type': 'array',
    'minItems': 8,
    'maxItems': 8,
    'title': 'one image as 8 rows of 8 counts',
    'items': {'type': 'array', 'items': _COUNT, 'minItems': 8, 'maxItems': 8},
}
PIXELS_SCHEMA = {
    'oneOf': [
        _FLAT,
        _GRID,
        {'type': 'array', 'items': _FLAT, 'minItems': 1, 'title': 'a list of images of 64 counts (n x 64)'},
        {'type': 'array', 'items': _GRID, 'minItems': 1, 'title': 'a list of images of 8 rows of 8 counts (n x 8 x 8)'},
    ]
}


class PixelsRequest(BaseModel):
    "Digits as UCI 8x8 counts (0..16): one image or a list of images, all of one form; no other field."

    model_config = ConfigDict(extra='forbid')
    pixels: Annotated[list[Any], WithJsonSchema(PIXELS_SCHEMA)] = Field(
        description='one image (64 counts, or 8 rows of 8 counts) or a list of images (n x 64 or n x 8 x 8); '
        'counts are numbers 0..16 (never booleans), the number of inked pixels in each 4x4 block of a 32x32 bitmap; '
        'more images than [serving] max_batch are refused with 413',
        examples=[
            [
                [0, 0, 5, 13, 9, 1, 0, 0],
                [0, 0, 13, 15, 10, 15, 5, 0],
                [0, 3, 15, 2, 0, 11, 8, 0],
                [0, 4, 12, 0, 0, 8, 8, 0],
                [0, 5, 8, 0, 0, 9, 8, 0],
                [0, 4, 11, 0, 1, 12, 7, 0],
                [0, 2, 14, 5, 10, 12, 0, 0],
                [0, 0, 6, 13, 10, 0, 0, 0],
            ]
        ],
    )


class Prediction(BaseModel):
    label: int = Field(ge=0, le=9, description='the most probable digit')
    probabilities: list[float] = Field(description='one per digit 0..9; they sum to 1')


class PredictResponse(BaseModel):
    model_version: int
    predictions: list[Prediction] = Field(description='one per input image, in the order sent')


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
        description='the raw item the drawing is stored as (content-addressed: the same drawing twice is one item)'
    )
    label: int = Field(ge=0, le=9, description='the digit it was, as sent')
    model_version: int | None = Field(description='the model version that read the drawing; null when none is loaded')
    model_answer: int | None = Field(description="that model's answer for the drawing")
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
