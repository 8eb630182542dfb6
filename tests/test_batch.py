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
from mlproj.digits_preprocess import render_counts
from mlproj.predict import Predictor
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
    from deploy.inputs import reader_for
    from mlproj.task import task_of

    files = [(r['item'], (folder / r['item']).read_bytes()) for r in ok]
    probs = Predictor(open_registry(stack.settings).load('production').onnx).probabilities(
        reader_for(task_of(stack.settings)).files(files, stack.settings.serving)
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


@pytest.fixture(scope='module')
def wine_model(tmp_path_factory):
    "A wine model trained for real on the wine benchmark (a short run), registered as production; (settings, version)."
    from mlproj.data import benchmark_version
    from mlproj.evaluate import evaluate_run
    from mlproj.servicelike import service_like_version
    from mlproj.train import config_from_settings, train

    tmp = tmp_path_factory.mktemp('wine-batch')
    s = make_settings(tmp, MLPROJ_TASK_NAME='wine', MLPROJ_PROBLEM_SERVICE_LIKE_PER_CLASS='4')
    vid = benchmark_version(s)
    run = tmp / 'run'
    train(config_from_settings(s, vid, run, max_epochs=30, wandb_mode='disabled', progress=False))
    ev = evaluate_run(run, vid, s.store_url, s.problem, service_like_version=service_like_version(s))
    reg = open_registry(s)
    reg.set_alias('production', reg.register(run, ev, train_run='t', eval_run='e', code_version={}))
    return s, vid


def test_a_csv_of_wine_rows_is_predicted_with_class_names_and_scores_as_it_is(wine_model, tmp_path):
    from mlproj.batch import predict_batch
    from mlproj.score import score_predictions
    from mlproj.task import load_task

    s, vid = wine_model
    wine = load_task('wine')
    X, y = load_split(Store(s.store_url), vid, 'test')
    cols = list(reversed(wine.input.features))  # any order, as a request may send them
    lines = [','.join(cols) + ',class']
    for x, label in zip(X, y):
        row = dict(zip(wine.input.features, x.tolist()))
        lines.append(','.join(f'{row[c]:.6g}' for c in cols) + f',{wine.classes[label]}')
    lines.append(','.join('x' for _ in cols) + ',')  # a row the task refuses: a row of its own, with the reason
    (tmp_path / 'wines.csv').write_text('\n'.join(lines) + '\n')
    m = predict_batch(s, file=str(tmp_path / 'wines.csv'), run_dir=tmp_path / 'run')
    rows = read_rows(tmp_path / 'run' / 'predictions.csv')
    assert list(rows[0]) == ['item', 'label', 'class', 'probability', 'margin', 'true_label', 'true_class', 'error']
    ok = [r for r in rows if not r['error']]
    assert len(ok) == len(y) and [r['item'] for r in rows if r['error']] == [f'wines.csv:{len(y) + 2}']
    assert all(r['class'] == wine.classes[int(r['label'])] for r in ok)
    assert [r['true_class'] for r in ok] == [wine.classes[k] for k in y]
    # the same model and preprocessing as the evaluation: the answers of the test split's own inputs
    probs = Predictor(open_registry(s).load('production').onnx).probabilities(X)
    assert [int(r['label']) for r in ok] == probs.argmax(1).tolist()
    assert (m['task'], m['classes'], m['labelled'], m['unreadable']) == ('wine', list(wine.classes), len(y), 1)
    assert set(m['counts']) <= set(wine.classes) and sum(m['counts'].values()) == len(y)
    assert m['accuracy'] == pytest.approx(float(np.mean(probs.argmax(1) == y))) and m['accuracy'] > 0.8
    # the predictions file scores as it is against the version's test split, once its items are the split's ids
    from mlproj.evaluate import split_items

    ids = split_items(Store(s.store_url), vid, 'test')
    text = (tmp_path / 'run' / 'predictions.csv').read_text().splitlines()
    own = [text[0]] + [i + line[line.index(',') :] for i, line in zip(ids, text[1 : len(ids) + 1])]
    scored = score_predictions(Store(s.store_url), vid, '\n'.join(own).encode())  # its class columns are read past
    assert scored['classes'] == list(wine.classes) and scored['model']['accuracy'] == pytest.approx(m['accuracy'])


def test_a_digits_model_does_not_predict_wine_rows(wine_model, trained, tmp_path):
    from mlproj.batch import predict_batch

    s = make_settings(tmp_path, MLPROJ_TASK_NAME='wine')
    with_production_model(trained, s)  # a digits model as production
    (tmp_path / 'w.jsonl').write_text('{"alcohol": 13.2}\n')
    with pytest.raises(ValueError, match="model version 1 is a model of task digits, not of the project's task wine"):
        predict_batch(s, file=str(tmp_path / 'w.jsonl'), run_dir=tmp_path / 'run')
