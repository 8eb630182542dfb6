"""Lighter models: smaller files from a trained model, compared on the same test split, and promoted only through the gate."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_settings

from mlproj.lighten import compare, lighten, register_candidates
from mlproj.registry import RegistryError, open_registry


def test_lighter_models_are_smaller_and_a_failing_one_cannot_reach_production(trained, tmp_path):
    shared, train_dir, _ = trained
    shutil.copytree(Path(shared.store_url), tmp_path / 'store')  # registers below: not into the session's shared store
    s = make_settings(tmp_path)
    folders = lighten(s, train_dir, tmp_path / 'light', epochs=10)
    rows = {r['model']: r for r in compare(s, {'teacher': train_dir, **folders}, calls=20)}
    for kind in ('int8', 'distilled', 'pruned'):
        assert rows[kind]['onnx_bytes'] < rows['teacher']['onnx_bytes'] / 2, (kind, rows[kind]['onnx_bytes'])
        assert rows[kind]['accuracy'] > 0.9, (kind, rows[kind]['accuracy'])  # ten classes: chance is 0.1
        assert json.loads((folders[kind] / 'metrics.json').read_text())['teacher_run'] == train_dir.name
    assert rows['int8']['accuracy'] > rows['teacher']['accuracy'] - 0.03  # quantization keeps what the teacher knew
    for r in rows.values():  # measured on the service-like set too, as the acceptance gate requires of any model
        assert r['evaluation']['service_like'] and 'not measured' not in ' '.join(
            r['evaluation']['acceptance']['failures']
        )
        assert r['service_like_accuracy'] == r['evaluation']['service_like']['accuracy']
    # a candidate pruned to almost nothing and not fine-tuned fails acceptance: registered, but never production
    weak = lighten(s, train_dir, tmp_path / 'weak', epochs=0, keep=0.1, kinds=('pruned',))
    weak_rows = compare(s, weak, calls=5)
    assert not weak_rows[0]['accepted']
    reg = open_registry(s)
    v = register_candidates(s, weak_rows, weak, train_dir.name)['pruned']
    with pytest.raises(RegistryError, match='did not pass acceptance'):
        reg.set_alias('production', v)
    assert reg.manifest(v)['lightened'] == 'pruned'
