"""What routes depend on, declared once as `Annotated` aliases (tests swap them with `app.dependency_overrides`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response

from mlproj.registry import Registry
from mlproj.settings import Settings

from .serving import ServedModel

__all__ = [
    'MaybeModelDep',
    'ModelDep',
    'RegistryDep',
    'SettingsDep',
    'get_model',
    'get_model_or_none',
    'get_registry',
    'get_settings',
]

# async: FastAPI runs plain `def` dependencies in its thread pool, which costs more than they do


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_model_or_none(request: Request) -> ServedModel | None:
    return request.app.state.model


async def get_model(request: Request, response: Response) -> ServedModel:
    "The served model (its version in the `X-Model-Version` header), or 503 with the reason there is none."
    model = request.app.state.model  # read once: a hot reload swaps the attribute, this request keeps the model it took
    if model is None:
        raise HTTPException(503, request.app.state.model_error)
    response.headers['X-Model-Version'] = str(model.version)
    return model


async def get_registry(request: Request) -> Registry:
    registry = request.app.state.registry
    if registry is None:
        raise HTTPException(503, f'the model store cannot be opened: {request.app.state.model_error}')
    return registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[ServedModel, Depends(get_model)]
MaybeModelDep = Annotated[ServedModel | None, Depends(get_model_or_none)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
