"""The model the app serves: loaded from the registry at startup, then kept on the version its reference names.

A `Reloader` polls the registry's cheap stamp (one stat of the index); when it moves and the reference now names another
version, the new bundle is loaded and every file checked beside the old one, then `app.state.model` is swapped in one
assignment. Requests hold the model they started with, so none fails during a swap. A bundle that fails its checks is
refused: the old version keeps serving and the reason goes to the log and to `/models` (`reload_error`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

import numpy as np

from mlproj.predict import Predictor
from mlproj.registry import Registry, RegistryError, open_registry
from mlproj.settings import Settings
from mlproj.store import IntegrityError
from mlproj.task import task_of

__all__ = ['Gather', 'Reloader', 'ServedModel', 'WrongTask', 'check_task', 'load_model']

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    "A verified model version ready to predict."

    version: int
    predictor: Predictor
    manifest: dict  # the bundle's bundle.json


class WrongTask(RegistryError):
    "A bundle made for another task than the one the server runs."


def check_task(manifest: dict, task, ref=None) -> None:
    "A `WrongTask` saying which when the bundle `manifest` describes was made for another task (or other classes) than `task`."
    got = manifest.get('task', 'digits')  # bundles from before tasks are the digits'
    which = (
        f'{ref} model (version {manifest.get("version")})'
        if isinstance(ref, str) and ref
        else f'model version {manifest.get("version")}'
    )
    if got != task.name:
        raise WrongTask(
            f"the model store's {which} is for task {got!r}; this server runs task {task.name!r} ([task] name in "
            f'settings.ini, or MLPROJ_TASK_NAME): serve a model trained for {task.name!r}, or run the server with '
            f'[task] name = {got}'
        )
    classes = manifest.get('classes')
    if classes is not None and list(classes) != list(task.classes):
        raise WrongTask(
            f"the model store's {which} answers classes {list(classes)}, but task {task.name!r} has "
            f'{list(task.classes)}: retrain it for the task as it is now'
        )


def _load(registry: Registry, settings: Settings, ref, named=None) -> ServedModel:
    "The version `ref` names, checked to be of the server's task (`named`: how the server names what it serves)."
    bundle = registry.load(ref)
    named = ref if named is None else named
    if named in (None, ''):  # the default: say which it was
        named = 'production' if 'production' in registry.index()['aliases'] else 'newest accepted'
    check_task(bundle.manifest, task_of(settings), named)
    return ServedModel(bundle.version, Predictor(bundle.onnx, threads=settings.serving.threads), bundle.manifest)


def _what(ref) -> str:
    return f'model {str(ref)!r}' if ref else 'the default model (production, else the newest accepted)'


def _log_failure(reason: str, e: Exception):
    if isinstance(e, (RegistryError, IntegrityError)):
        log.error('%s', reason)
    else:
        log.exception('%s', reason)


def load_model(
    settings: Settings,
    ref: str | int | None,  # a version, an alias, or None for the default (production, else the newest accepted)
) -> tuple[Registry | None, ServedModel | None, str | None]:
    "(registry, model, None) or, when the model cannot be loaded, (registry or None, None, the reason); never raises."
    registry = None
    try:
        registry = open_registry(settings)
        model = _load(registry, settings, ref)
    except Exception as e:
        reason = f'no model is loaded: {_what(ref)} could not be loaded: {e}'
        _log_failure(reason, e)
        return registry, None, reason
    log.info('serving model version %d from %s', model.version, settings.store_url)
    return registry, model, None


class Reloader:
    "Keeps `state.model` on the version `ref` names: load and verify beside the old one, then swap; a bad bundle is refused."

    def __init__(
        self,
        state,  # the app's state: registry, model, model_error, reload_error
        settings: Settings,
        ref: str | int | None,  # what the server serves (a version, an alias, or None)
        on_swap=None,  # called with (old version or None, new version) after a swap
        on_failure=None,
    ):  # called with the reason when a new version cannot be loaded
        self.state, self.settings, self.ref = state, settings, ref
        self.on_swap, self.on_failure = on_swap, on_failure
        self.stamp, self._lock = None, threading.Lock()

    def check(
        self,
        force: bool = False,  # look even when the registry's stamp has not moved
    ) -> int | None:
        "Swap to the version `ref` names now if it moved; returns the version served. Blocking: run it in a thread."
        with self._lock:
            st = self.state
            try:
                if st.registry is None:
                    st.registry = open_registry(self.settings)
                stamp = st.registry.stamp()
                if stamp == self.stamp and not force:
                    return st.model.version if st.model else None
                v = st.registry.resolve(self.ref)
            except Exception as e:
                st.reload_error = f'the registry cannot be read to check {_what(self.ref)}: {e}'
                _log_failure(st.reload_error, e)
                return st.model.version if st.model else None
            self.stamp = stamp
            old = st.model.version if st.model else None
            if v == old:
                st.reload_error = None
                return old
            try:
                model = _load(st.registry, self.settings, v, self.ref or '')
            except Exception as e:
                keep = f'version {old} keeps serving' if old is not None else 'no model is served'
                st.reload_error = f'version {v} ({_what(self.ref)}) was refused, {keep}: {e}'
                _log_failure(st.reload_error, e)
                if self.on_failure:
                    self.on_failure(st.reload_error)
                return old
            st.model, st.model_error, st.reload_error = (
                model,
                None,
                None,
            )  # one assignment: requests in flight keep theirs
            log.info('now serving model version %d (was %s)', v, old)
            if self.on_swap:
                self.on_swap(old, v)
            return v


class Gather:
    """Small batches that reach `/predict` in the same turn of the event loop, answered by one model call.

    The first request of a turn yields once (`asyncio.sleep(0)`): the requests the server has already read run up to
    their model call meanwhile and join it, then the first runs the model on all of them and hands each its rows. Nothing
    waits on a timer. Under load one call on k images costs far less than k calls on one; a request alone pays one turn
    of the loop, so after `probe` turns in a row in which nobody joined, only one request in `every` yields (until one
    is joined again). Every request is checked on its own before it joins; a request on another model (a hot reload in
    between) or past `max_images` starts a group of its own."""

    def __init__(
        self,
        max_images: int = 64,
        probe: int = 4,
        every: int = 16,
        on_call=None,  # called with the number of requests each model call answered (the app's metrics)
    ):
        self.max_images, self.probe, self.every, self.on_call = max_images, probe, every, on_call or (lambda n: None)
        self._open, self.alone = None, 0  # the group taking joiners now; turns in a row nobody joined

    async def probabilities(self, model: ServedModel, x):
        group = self._open
        if group is not None and group.model is model and group.n + len(x) <= self.max_images:
            return await group.join(x)
        self.alone += 1
        if self.alone > self.probe and self.alone % self.every:  # quiet: no turn
            self.on_call(1)
            return model.predictor.probabilities(x)
        group = self._open = _Group(model, x)
        cancelled = None
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError as e:
            cancelled = e  # the others still get their answers below
        if self._open is group:
            self._open = None
        if len(group.xs) > 1:
            self.alone = 0
        self.on_call(len(group.xs))
        probs = group.run()
        if cancelled:
            raise cancelled
        return probs


class _Group:
    def __init__(self, model: ServedModel, x):
        self.model, self.xs, self.futures, self.n = model, [x], [None], len(x)

    def join(self, x) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.xs.append(x)
        self.futures.append(fut)
        self.n += len(x)
        return fut

    def run(self):
        "The first request's rows; every other request's future gets its own (or the model's exception)."
        if len(self.xs) == 1:
            return self.model.predictor.probabilities(self.xs[0])
        try:
            probs = self.model.predictor.probabilities(np.concatenate(self.xs))
        except Exception as e:
            for fut in self.futures[1:]:
                if not fut.done():
                    fut.set_exception(e)
            raise
        start = len(self.xs[0])
        for x, fut in zip(self.xs[1:], self.futures[1:]):
            if not fut.done():
                fut.set_result(probs[start : start + len(x)])
            start += len(x)
        return probs[: len(self.xs[0])]
