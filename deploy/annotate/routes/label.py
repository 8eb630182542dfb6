"""Labelling's API: the next item (a lease), saving an answer, reading one's assignment, undo, progress, an item's image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from mlproj import annotate as A

from ..deps import DbDep, PersonDep, SettingsDep, db_call, http
from ..schemas import Answer, AssignmentRecord, Next, PathId, Progress, SaveResponse, UndoResponse, refusals

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


@router.get('/items/{item_id}/image', include_in_schema=False)
def image(item_id: Annotated[int, PathId('item')], person: PersonDep, db: DbDep, settings: SettingsDep):
    "An item's image: for a person it was handed to, or a reviewer of its project."
    sha, media = http(A.item_for, db, person, item_id)
    from mlproj.items import get_item
    from mlproj.store import Store

    data = get_item(Store(settings.store_url), sha)
    if not media.startswith(
        'image/'
    ):  # an item that is not an image file (the digits' 8x8 counts): as the task draws it
        from mlproj.task import task_of

        task = task_of(settings)
        if task.show_as == 'row':
            raise HTTPException(415, f'item {item_id} is a row of task {task.name}, not an image: read it from /items')
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
