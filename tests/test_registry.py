"""The model store with a real trained model: what is served is what was evaluated, and nothing tampered loads."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from mlproj.data import load_split
from mlproj.evaluate import check_acceptance, classification_metrics
from mlproj.predict import Predictor
from mlproj.registry import Registry, RegistryError, open_registry
from mlproj.settings import Problem
from mlproj.store import IntegrityError, Store


@pytest.fixture
def store_copy(trained, tmp_path):
    "A private copy of the fixture's store, free to damage."
    s, _, _ = trained
    shutil.copytree(s.store_url, tmp_path / 'store')
    return Store(str(tmp_path / 'store'))


def test_loaded_bundle_predicts_what_was_evaluated(trained):
    s, _, ev = trained
    bundle = open_registry(s).load()
    X, y = load_split(Store(s.store_url), bundle.manifest['dataset_version'], 'test')
    got = classification_metrics(y, Predictor(bundle.onnx).predict(X))
    assert got['accuracy'] == pytest.approx(ev['model']['accuracy'])
    assert bundle.manifest['metrics']['accuracy'] == pytest.approx(ev['model']['accuracy'])
    assert bundle.manifest['baseline']['accuracy'] < 0.2
    assert bundle.manifest['task'] == 'digits' and bundle.manifest['preprocessing']['output_shape'] == ['batch', 10]


def test_bundle_weights_load_without_pickle(trained):
    from safetensors.numpy import load

    s, _, _ = trained
    bundle = open_registry(s).load()
    weights = load(bundle.files['model.safetensors'])
    assert sum(w.size for w in weights.values() if w.dtype == np.float32) > 30_000
    assert not any(name.endswith(('.pt', '.pth', '.ckpt', '.pkl')) for name in bundle.files)


@pytest.mark.parametrize('name', ['model.onnx', 'model.safetensors', 'net.json', 'bundle.json'])
def test_tampered_model_file_is_refused(store_copy, name):
    path = f'{store_copy.root}/models/1/{name}'
    data = bytearray(store_copy.read(path))
    data[len(data) // 2] ^= 0x01
    store_copy.fs.pipe(path, bytes(data))
    with pytest.raises(IntegrityError):
        Registry(store_copy).load(1)


def test_production_requires_acceptance(trained, store_copy):
    _, train_dir, ev = trained
    strict = Problem(min_test_accuracy=1.01, min_macro_f1=0.5, min_class_recall=0.5)
    failing = dict(ev, acceptance=vars(check_acceptance(ev['model'], strict)))
    reg = Registry(store_copy)
    v = reg.register(train_dir, failing, train_run='strict')
    with pytest.raises(RegistryError, match='did not pass acceptance.*below 1.01'):
        reg.set_alias('production', v)
    assert reg.resolve() == 1  # the default served version is still the newest accepted one
    assert reg.set_alias('staging', v) == v and reg.set_alias('production', 1) == 1


def test_crash_while_registering_leaves_previous_state(trained, store_copy, monkeypatch):
    _, train_dir, ev = trained
    reg = Registry(store_copy)
    before = reg.index()

    def boom(*a, **k):
        raise OSError('disk full')

    monkeypatch.setattr(store_copy, 'swap', boom)  # the commit to the index fails after the bundle was written
    with pytest.raises(OSError):
        reg.register(train_dir, ev, train_run='crash')
    monkeypatch.undo()
    assert reg.index() == before and reg.load().version == 1
    assert reg.register(train_dir, ev, train_run='after') == 3  # 2 stays claimed by the failed attempt: never reused
    assert reg.prune(grace=0)['abandoned'] == [2] and not (Path(store_copy.root) / 'models' / '2').exists()


def test_a_write_that_landed_but_was_answered_as_a_conflict_is_not_applied_twice(store_copy):
    "An S3 PUT that the client retried after its first try had succeeded answers 412: the move must be kept once, not redone."
    from mlproj.store import Conflict

    reg = Registry(store_copy)
    swap, answered = reg.store.swap, []

    def swap_then_conflict(
        path, data, tag
    ):  # the write lands, then its answer is lost and the retry meets our own write
        swap(path, data, tag)
        if not answered:
            answered.append(path)
            raise Conflict(f'{path} changed since it was read')

    reg.store.swap = swap_then_conflict
    reg.set_alias('production', 1, by='test', reason='once', force=True)
    assert answered and [h['reason'] for h in reg.history()] == ['once'] and reg.conflicts == 0
    assert reg.resolve('production') == 1
