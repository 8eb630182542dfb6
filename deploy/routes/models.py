"""The model registry as the server sees it."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from ..deps import MaybeModelDep, RegistryDep
from ..schemas import ErrorDetail, Models

router = APIRouter(tags=['models'])


@router.get('/models', responses={503: {'model': ErrorDetail, 'description': 'the model store cannot be read'}})
async def models(request: Request, registry: RegistryDep, served: MaybeModelDep) -> Models:
    "Every registered version with its metrics, the aliases, and the version being served."

    def read():
        index = registry.index()
        return registry.listing(), {
            a: registry.resolve(a, index) for a in index['aliases']
        }  # resolve: a damaged alias is named

    try:
        rows, aliases = await run_in_threadpool(read)
    except Exception as e:
        raise HTTPException(503, f'the model registry cannot be read: {e}') from e
    current = served.version if served else None
    return Models(
        serving=current,
        reload_error=request.app.state.reload_error,
        aliases=aliases,
        versions=[dict(r, serving=r['version'] == current) for r in rows],
    )
