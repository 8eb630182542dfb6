"""The model the app serves: loaded from the registry once, at startup."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from mlproj.predict import Predictor
from mlproj.registry import Registry, RegistryError
from mlproj.settings import Settings
from mlproj.store import IntegrityError, Store

__all__ = ['ServedModel', 'load_model']

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    "A verified model version ready to predict."
    version: int
    predictor: Predictor
    manifest: dict # the bundle's bundle.json


def load_model(settings: Settings, ref: str | int | None # a version, an alias, or None for the newest accepted
              ) -> tuple[Registry | None, ServedModel | None, str | None]:
    "(registry, model, None) or, when the model cannot be loaded, (registry or None, None, the reason); never raises."
    registry = None
    what = f'model {str(ref)!r}' if ref else 'the newest accepted model'
    try:
        registry = Registry(Store(settings.store_url))
        bundle = registry.load(ref)
        model = ServedModel(bundle.version, Predictor(bundle.onnx, threads=settings.serving.threads), bundle.manifest)
    except Exception as e:
        reason = f'no model is loaded: {what} could not be loaded: {e}'
        if isinstance(e, (RegistryError, IntegrityError)): log.error('%s', reason)
        else: log.exception('%s', reason)
        return registry, None, reason
    log.info('serving model version %d from %s', model.version, settings.store_url)
    return registry, model, None
