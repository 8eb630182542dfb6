"""Labelling's API: the next item (a lease), saving an answer, reading one's assignment, undo, progress, an item's image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from mlproj import annotate as A

from ..deps import DbDep, PersonDep, SettingsDep, db_call, http
from ..schemas import (
    Answer,
    AssignmentRecord,
    ItemRow,
    Next,
    PathId,
    Progress,
    SaveResponse,
    UndoResponse,
    refusals,
)

router = APIRouter(prefix='/api', tags=['label'])

# an item's bytes opened on their own (an SVG from a crawl is a document that can hold script): nothing runs
ITEM_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


def _json(data) -> Response:
    "A JSON answer without FastAPI's encoder walking it first (plain dicts, lists, numbers and strings only)."
    import orjson

    return Response(orjson.dumps(data), media_type='application/json')


@router.get('/next', response_model=Next, responses=refusals(403))
def next_item(
    person: PersonDep,
    db: DbDep,
    exclude: Annotated[
        str,
        Query(
            pattern='^[0-9,]*$',
            max_length=2000,
            description='assignment ids the page holds or has answered without an answer back yet, comma-separated',
        ),
    ] = '',
):
    "The next item to label (a lease): one the page holds already is never handed to it again."
    return dict(next=http(A.next_assignment, db, person, [int(x) for x in exclude.split(',') if x]))


@router.post('/assignments/{assignment_id}', response_model=SaveResponse, responses=refusals(403, 404, 409))
async def save(
    assignment_id: Annotated[int, PathId('assignment')], body: Answer, request: Request, person: PersonDep, db: DbDep
):
    "Save a label (or a skip: label null); answers with the next item to preload and progress."
    return _json(
        await db_call(request.app.state, A.answer, db, person, assignment_id, body.label, body.item_id, body.exclude)
    )


@router.get('/assignments/{assignment_id}', response_model=AssignmentRecord, responses=refusals(403, 404))
def read_assignment(assignment_id: Annotated[int, PathId('assignment')], person: PersonDep, db: DbDep):
    "One of your assignments (403 if it is someone else's)."
    return http(A.read_assignment, db, person, assignment_id)


@router.post('/undo', response_model=UndoResponse)
def undo(person: PersonDep, db: DbDep):
    "Take back your last label: its item comes back to you."
    return dict(undone=http(A.undo, db, person))


@router.get('/progress', response_model=Progress)
def progress(person: PersonDep, db: DbDep):
    "Labels you gave, and the project's figures (reused for a fraction of a second)."
    return A.progress(db, person)


def _item(person, db, settings, item_id: int) -> tuple[bytes, str]:
    "An item's bytes and media type: for a person it was handed to, or a reviewer of its project."
    sha, media = http(A.item_for, db, person, item_id)
    from mlproj.items import get_item
    from mlproj.store import Store

    return get_item(Store(settings.store_url), sha), media


def item_row(task, data: bytes, media: str) -> list[dict]:
    "A row task's item as a person reads it: each feature's name, value and unit, in the task's order."
    values = task.render(task.decode(data, media))
    units = task.input.units or ('',) * len(task.input.features)
    # float32 inputs printed to 7 significant digits: 14.23, not 14.229999542236328
    return [dict(name=f, value=float(f'{values[f]:.7g}'), unit=u) for f, u in zip(task.input.features, units)]


@router.get('/items/{item_id}/row', response_model=ItemRow, responses=refusals(403, 404, 409))
def row(item_id: Annotated[int, PathId('item')], person: PersonDep, db: DbDep, settings: SettingsDep):
    "An item of a row task as the labelling page shows it: its features' values and units, in the task's order."
    from mlproj.task import task_of

    data, media = _item(person, db, settings, item_id)
    task = task_of(settings)
    if task.show_as != 'row':  # no such resource: the item is an image
        raise HTTPException(404, f'task {task.name} has no rows: its items are images, at /api/items/{item_id}/image')
    try:
        features = item_row(task, data, media)
    except ValueError as e:  # InputError: an item the task cannot read (stored under another task)
        raise HTTPException(409, f'item {item_id} is not a row task {task.name} reads: {e}') from None
    return _json(dict(item_id=item_id, task=task.name, features=features))


@router.get('/items/{item_id}/image', include_in_schema=False)
def image(item_id: Annotated[int, PathId('item')], person: PersonDep, db: DbDep, settings: SettingsDep):
    "An item's image: for a person it was handed to, or a reviewer of its project."
    data, media = _item(person, db, settings, item_id)
    if not media.startswith('image/'):  # an item that is not an image file (an array media type): as the task draws it
        from mlproj.task import task_of

        task = task_of(settings)
        if task.show_as == 'row':
            raise HTTPException(
                415, f'item {item_id} is a row of task {task.name}, not an image: read it from /api/items/{item_id}/row'
            )
        data, media = task.render(task.decode(data, media)), 'image/png'
    return Response(
        data,
        media_type=media,
        headers={
            'cache-control': 'private, max-age=3600',
            'Content-Security-Policy': ITEM_CSP,
            'X-Content-Type-Options': 'nosniff',
        },
    )
