"""Batch predictions (the predict job): through the queue on a folder of images, and from the CLI on a dataset version."""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_settings
from test_jobs import assert_reads_as_report
from test_queue import stack  # noqa: F401 (the fixture: an embedded or a real Redis, and workers)

from mlproj.data import load_split
from mlproj.predict import Predictor
from mlproj.preprocess import render_counts
from mlproj.registry import open_registry
from mlproj.settings import to_env
from mlproj.store import Store


def with_production_model(trained, settings):
    "The trained fixture's store (its benchmark and model version 1) copied into `settings`' store, version 1 as production."
    shutil.copytree(trained[0].store_url, settings.store_url)
    open_registry(settings).set_alias('production', 1)


def image_folder(trained, folder: Path, n=16):
    "n test digits drawn as PNG files (both polarities) in folders named by their label, and one file that is no image."
    s0, _, ev = trained
    X, y = load_split(Store(s0.store_url), ev['dataset_version'], 'test')
    for i in range(n):
        (folder / str(y[i])).mkdir(parents=True, exist_ok=True)
        (folder / str(y[i]) / f'{i}.png').write_bytes(render_counts(X[i], dark_on_light=i % 2 == 0))
    (folder / 'readme.txt').write_text('not an image')
    return folder


def read_rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_predict_job_through_the_queue_writes_predictions_and_summary(stack, trained):
    shutil.copy(ROOT / 'nbs' / 'jobs' / 'predict.ipynb', stack.tmp / 'nbs' / 'jobs')
    with_production_model(trained, stack.settings)
    folder = image_folder(trained, stack.tmp / 'scans')
    # the typed parameter checks refuse before anything is queued
    with pytest.raises(ValueError, match='model: 1 is not a str'):
        stack.jq.submit('predict', {'folder': str(folder), 'model': 1})
    with pytest.raises(ValueError, match="no parameter 'images'"):
        stack.jq.submit('predict', {'images': str(folder)})
    assert stack.jq.jobs() == []
    stack.workers(1)
    job = stack.jq.submit('predict', {'folder': str(folder)})
    done = stack.jq.wait(job['id'], timeout=240)
    assert done['state'] == 'done' and done['attempts'] == 1, (done, stack.worker_log())
    run = stack.settings.reports_dir / 'runs' / done['run_id']
    rows = read_rows(run / 'predictions.csv')
    assert [r['item'] for r in rows if r['error']] == ['readme.txt'] and len(rows) == 17
    ok = [r for r in rows if not r['error']]
    # the same preprocessing as the service: the API's own decoding of uploads, then the same model
    from deploy.inputs import images_batch

    files = [(r['item'], (folder / r['item']).read_bytes()) for r in ok]
    probs = Predictor(open_registry(stack.settings).load('production').onnx).probabilities(
        images_batch(files, stack.settings.serving)
    )
    assert [int(r['label']) for r in ok] == probs.argmax(1).tolist()
    assert np.allclose([float(r['probability']) for r in ok], probs.max(1), atol=1e-5)
    m = done['result']['metrics']
    assert json.loads((run / 'metrics.json').read_text()) == m
    assert m['model_ref'] == 'production' and m['model_version'] == 1 and m['folder'] == str(folder.resolve())
    assert (m['items'], m['predicted'], m['unreadable'], m['labelled']) == (17, 16, 1, 16)
    assert sum(m['counts'].values()) == 16 and m['counts'] == {k: sum(r['label'] == k for r in ok) for k in m['counts']}
    assert m['accuracy'] == pytest.approx(np.mean([r['label'] == r['true_label'] for r in ok])) and m['accuracy'] >= 0.6
    assert m['mean_confidence'] == pytest.approx(np.mean(probs.max(1)), abs=1e-5)
    assert m['train_run'] == 'train-fixture' and m['eval_run'] == 'eval-fixture'  # the lineage of model version 1
    page = (run / 'predict.html').read_text()
    assert 'accuracy on labelled' in page and '<dt>training run</dt><dd>train-fixture</dd>' in page
    assert_reads_as_report(page, run, stack.tmp, folder)


def _mlproj(settings, *args):
    env = {'PATH': '/usr/bin:/bin', 'HOME': str(settings.reports_dir.parent), **to_env(settings)}
    return subprocess.run(
        [str(ROOT / '.venv/bin/mlproj'), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def test_predict_command_scores_a_dataset_version_as_the_evaluation_does(trained, tmp_path):
    settings = make_settings(tmp_path)
    with_production_model(trained, settings)
    vid = trained[2]['dataset_version']
    r = _mlproj(settings, 'predict', '--dataset-version', vid[:8], '--split', 'test', '--quiet')
    assert r.returncode == 0, r.stderr
    run = next((settings.reports_dir / 'runs').glob('*-predict-*'))
    m = json.loads((run / 'metrics.json').read_text())
    assert (m['dataset_version'], m['split'], m['model_version']) == (vid, 'test', 1)
    assert m['accuracy'] == pytest.approx(
        trained[2]['model']['accuracy']
    )  # what the evaluation measured, from the same model and data
    rows = read_rows(run / 'predictions.csv')
    assert len(rows) == m['items'] == m['labelled'] == trained[2]['model']['n']
    assert all(len(r['item']) == 64 and r['true_label'] != '' for r in rows)
    assert f'accuracy {m["accuracy"]:.4f}' in r.stdout and 'predictions.csv' in r.stdout
    bad = _mlproj(settings, 'predict', '--folder', str(tmp_path / 'missing'), '--quiet')
    assert bad.returncode == 1 and bad.stderr.count('\n') == 1 and 'does not exist' in bad.stderr
    assert _mlproj(settings, 'predict', '--split', 'dev').returncode == 2  # argparse refuses it before anything runs
