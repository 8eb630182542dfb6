"""Review's API: a reviewer's label for an item without a majority, and the project's agreement figures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request

from mlproj import agreement as G
from mlproj import annotate as A

from ..deps import DbDep, PersonDep, http, project
from ..schemas import Adjudicated, Adjudication, Agreement, PathId, refusals

router = APIRouter(prefix='/api', tags=['review'])


@router.post('/review/{item_id}', response_model=Adjudicated, responses=refusals(403, 409))
def adjudicate(item_id: Annotated[int, PathId('item')], body: Adjudication, person: PersonDep, db: DbDep):
    "A reviewer's label for an item without a majority."
    http(A.adjudicate, db, person, item_id, body.label)
    return dict(item_id=item_id, label=body.label)


@router.get('/agreement', response_model=Agreement, responses=refusals(403))
def agreement(request: Request, person: PersonDep, db: DbDep):
    "Agreement figures of your project (reviewers only: annotators are blind to each other)."
    if person.role != 'reviewer':
        raise HTTPException(403, 'agreement figures are for reviewers')
    return G.agreement(db, project(request, person).name)
