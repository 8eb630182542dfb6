"""Admin endpoints (bearer token; 503 when none is configured): reload the served model now (role operate), promote over HTTP (role promote)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mlproj.registry import RegistryError
from mlproj.release import acceptance_in_force

from ..auth import OperateDep, PromoteDep

router = APIRouter(prefix='/admin', tags=['admin'])


class Reloaded(BaseModel):
    serving: int | None = Field(description='the version /predict uses now')
    reload_error: str | None = Field(None, description='why the version the reference names was refused, if it was')


class Promotion(BaseModel):
    version: int = Field(ge=1, description='the version to point the alias at')
    alias: str = Field('production', pattern='^(staging|production)$')
    reason: str = Field('', max_length=500, description='why, kept in the registry history')


async def _reload(request: Request) -> Reloaded:
    st = request.app.state
    served = await run_in_threadpool(st.reloader.check, True)
    return Reloaded(serving=served, reload_error=st.reload_error)


@router.post('/reload')
async def reload(request: Request, caller: OperateDep) -> Reloaded:
    "Look at the registry now and swap to the version the served reference names (loaded and verified beside the old)."
    return await _reload(request)


@router.post('/promote')
async def promote(request: Request, body: Promotion, caller: PromoteDep) -> Reloaded:
    "Point an alias at a version (production only takes one whose metrics meet the acceptance criteria in force), then reload. Needs a token with the promote role."
    st = request.app.state
    if st.registry is None:
        raise HTTPException(503, f'the model store cannot be opened: {st.model_error}')
    try:
        await run_in_threadpool(
            st.registry.set_alias,
            body.alias,
            body.version,
            str(caller),
            body.reason,
            gate=acceptance_in_force(st.settings),  # the criteria in settings.ini now, not the stored verdict
        )
    except RegistryError as e:
        raise HTTPException(409, str(e)) from e
    return await _reload(request)
