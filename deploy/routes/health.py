"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import ModelDep
from ..schemas import ErrorDetail, Health, Ready

router = APIRouter(tags=['health'])


@router.get('/health')
async def health() -> Health:
    "The process answers (whether or not a model is loaded)."
    return Health()


@router.get('/ready', responses={503: {'model': ErrorDetail, 'description': 'no model is loaded; the detail says why'}})
async def ready(model: ModelDep) -> Ready:
    "A model is loaded and /predict can answer."
    return Ready(model_version=model.version)
