"""Request and response bodies of the annotation API, the bounds of its ids, and the refusals its schema documents."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from mlproj.annotate import MAX_LABELS

from ..schemas import ErrorDetail, api_routes, plain_validation_error

__all__ = [
    'MAX_ID',
    'Adjudicated',
    'Adjudication',
    'Agreement',
    'Answer',
    'AssignmentRecord',
    'AssignmentView',
    'ErrorDetail',
    'Id',
    'Int',
    'ItemRow',
    'Label',
    'Next',
    'PathId',
    'Progress',
    'SaveResponse',
    'Saved',
    'UndoResponse',
    'Undone',
    'document_refusals',
    'refusals',
]

# ids are INTEGER columns: 32 bits on PostgreSQL, 64 on SQLite; one bound for both, so a larger id is refused (422)
# by validation before it reaches either database (where it raised an overflow: a 500)
MAX_ID = 2**31 - 1


def _integral(v):
    return int(v) if type(v) is float and v.is_integer() else v


def Int(lo: int, hi: int, description: str | None = None):
    'An integer from `lo` to `hi` as JSON Schema says one: 3 and 3.0, never true, "3" or 3.5 (pydantic\'s lax mode takes the first three).'
    # the bounds before the validator: after it, pydantic writes them into the schema as `ge`/`le`, which JSON Schema ignores
    return Annotated[int, Field(ge=lo, le=hi, description=description), BeforeValidator(_integral), Strict()]


Id = Int(1, MAX_ID)
Label = Int(0, MAX_LABELS - 1, "the label's index in the project's label list")


def PathId(what: str):
    return Path(ge=1, le=MAX_ID, description=f'the {what} id (1 to 2^31 - 1)')


class Answer(BaseModel):
    "A label (or a skip) for an assignment. Integers only: `true` is not 1."

    model_config = ConfigDict(extra='forbid')
    label: Label | None = Field(None, description="the label's index in the project's labels; null skips the item")
    item_id: Id | None = Field(
        None, description='the item shown, so that a label arriving after its lease ran out is kept when it can be'
    )
    exclude: list[Id] = Field(
        [],
        description='assignment ids the page already holds or has answered without an answer back yet '
        '(the next one is none of them)',
    )


class Adjudication(BaseModel):
    model_config = ConfigDict(extra='forbid')
    label: Label


class AssignmentView(BaseModel):
    "An item handed to the person: leased to them until its lease runs out."

    id: int = Field(description='the assignment id: answer it with POST /api/assignments/{id}')
    item_id: int
    image: str = Field(description="the item's image URL")
    state: Literal['leased', 'done', 'skipped']
    label: int | None
    suggestion: int | None = Field(
        None, description="the production model's answer, when the project shows it to annotators"
    )


class Next(BaseModel):
    next: AssignmentView | None = Field(description='null when nothing is left to label for you')


class Progress(BaseModel):
    mine: int = Field(description='labels you gave')
    items: int
    items_done: int = Field(description='items with all k labels in')
    labels: int
    labels_needed: int


class Saved(BaseModel):
    id: int
    item_id: int
    state: Literal['done', 'skipped']
    label: int | None


class SaveResponse(BaseModel):
    saved: Saved
    next: AssignmentView | None = Field(description='the next item to preload (null when nothing is left)')
    progress: Progress


class Undone(BaseModel):
    assignment: AssignmentView = Field(description='the assignment taken back: leased to you again, to answer again')
    progress: Progress


class UndoResponse(BaseModel):
    undone: Undone | None = Field(description='null when there is nothing to undo')


class AssignmentRecord(BaseModel):
    id: int
    item_id: int
    state: Literal['leased', 'done', 'skipped']
    label: int | None


class Feature(BaseModel):
    name: str
    value: float
    unit: str = Field(description="the unit the value is in ('' for none)")


class ItemRow(BaseModel):
    "An item of a row task, as the task shows it to a person: its features' values in the task's order."

    item_id: int
    task: str
    features: list[Feature]


class Adjudicated(BaseModel):
    item_id: int
    label: int


class Pair(BaseModel):
    a: str
    b: str
    items: int
    kappa: float | None = Field(description="Cohen's kappa of the two on the items both labelled")


class AnnotatorFigures(BaseModel):
    labels: int
    agreement: float | None = Field(description='the share of the other labels of their items that agree with theirs')
    mean_kappa: float | None


class Agreement(BaseModel):
    items_labelled: int
    alpha: float | None = Field(
        description="Krippendorff's alpha; null while it is undefined (fewer than two labels on one item)"
    )
    fleiss: float | None = Field(description="Fleiss' kappa over the items with all k labels; null with k = 1 or none")
    pairwise: list[Pair]
    confusion: list[list[float]] = Field(description="Krippendorff's coincidence matrix between annotators' labels")
    labels: list[str]
    annotators: dict[str, AnnotatorFigures]


_WHY = {
    400: 'the body cannot be parsed (not valid JSON, not UTF-8)',
    401: 'no valid personal token (login cookie or `Authorization: Bearer <token>`)',
    403: 'not yours, or not for your role',
    404: "no such assignment or item (or no row of it: the task's items are images)",
    409: 'the state of things does not allow it (answered already, the lease went to others, '
    "a label past the project's labels)",
}


def refusals(*codes: int) -> dict:
    "The `responses=` of a route that can refuse with `codes`, each with its ErrorDetail body."
    return {c: {'model': ErrorDetail, 'description': _WHY[c]} for c in codes}


def document_refusals(app, person_dep):
    "Answer validation errors as ErrorDetail and make the schema say so; list 401 on every route behind `person_dep`, 400 where a body is read."
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(RequestValidationError, plain_validation_error)
    built = app.openapi

    def calls(d):
        yield d.call
        for x in d.dependencies:
            yield from calls(x)

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = built()
        schema.setdefault('components', {}).setdefault('schemas', {}).setdefault(
            'ErrorDetail', ErrorDetail.model_json_schema()
        )
        error = {'application/json': {'schema': {'$ref': '#/components/schemas/ErrorDetail'}}}
        for route in api_routes(app.routes):
            if not route.include_in_schema:
                continue
            for method in route.methods:
                op = schema['paths'][route.path_format][method.lower()]
                more = ([401] if person_dep in set(calls(route.dependant)) else []) + (
                    [400] if 'requestBody' in op else []
                )
                if '422' in op['responses']:
                    op['responses']['422'] = {'description': 'the request does not match the schema', 'content': error}
                for code in more:
                    op['responses'].setdefault(str(code), {'description': _WHY[code], 'content': error})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
    return app
