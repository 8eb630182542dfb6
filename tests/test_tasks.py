"""The task contract's conformance suite: every task `mlproj tasks` lists, and a task defined here in the tests
(tests/tasks/tiny_colour.py, 3 classes of 16x16 colour images), goes through data -> train -> evaluate -> register -> serve -> predict
over HTTP with nothing but its task module; a task that is incomplete or inconsistent is refused before it trains."""

import os
import subprocess

import httpx
import numpy as np
import pytest
from conftest import ROOT, make_settings, serving_env, uvicorn_server

from mlproj.cli import _requests
from mlproj.task import SHIPPED, ImageInput, RowInput, Task, TaskError, check_task, load_task

TINY = 'tests.tasks.tiny_colour'  # a module of the tests, named as a team names its own task's module
TASKS = [*SHIPPED, TINY]
EPOCHS = {'digits': 4, 'wine': 30, TINY: 8}  # short runs: each must still beat its majority baseline by far


def test_mlproj_tasks_lists_the_shipped_tasks_one_a_line_then_describes_them():
    r = subprocess.run(
        [str(ROOT / '.venv/bin/mlproj'), 'tasks'],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, 'MLPROJ_TASK_NAME': 'digits'},  # marked as the project's, whatever settings.ini says
    )
    assert r.returncode == 0, r.stderr
    names = r.stdout.split('\n\n')[0].split()
    assert names == list(SHIPPED)
    assert 'classes (3): barolo, grignolino, barbera' in r.stdout and '* digits:' in r.stdout


@pytest.mark.parametrize('name', TASKS)
def test_every_task_runs_data_train_evaluate_register_serve(name, tmp_path):
    from mlproj.data import benchmark_version, load_split
    from mlproj.evaluate import evaluate_run
    from mlproj.registry import open_registry
    from mlproj.servicelike import service_like_version
    from mlproj.train import config_from_settings, train

    s = make_settings(tmp_path, MLPROJ_TASK_NAME=name, MLPROJ_PROBLEM_SERVICE_LIKE_PER_CLASS='4')
    task = load_task(name)
    vid = benchmark_version(s)
    X, y = load_split(_store(s), vid, 'test')
    assert X.shape[1:] == task.input.shape and X.dtype == np.float32 and set(y) <= set(range(len(task.classes)))
    run = tmp_path / 'run'
    r = train(config_from_settings(s, vid, run, max_epochs=EPOCHS[name], wandb_mode='disabled', progress=False))
    assert r.task == name
    ev = evaluate_run(run, vid, s.store_url, s.problem, service_like_version=service_like_version(s))
    assert ev['task'] == name and ev['classes'] == list(task.classes)
    assert len(ev['model']['per_class_recall']) == len(task.classes) == len(ev['model']['confusion'])
    assert ev['model']['accuracy'] > ev['baseline']['accuracy'] + 0.3, (ev['model']['accuracy'], ev['baseline'])
    assert ev['service_like']['n'] == 4 * len(task.classes) and set(ev['service_like']['slices']) == set(
        task.slice_keys
    )
    version = open_registry(s).register(run, ev, train_run='t', eval_run='e', code_version={})
    manifest = open_registry(s).manifest(version)
    assert manifest['task'] == name and manifest['preprocessing']['output_shape'] == ['batch', len(task.classes)]
    assert manifest['preprocessing']['input_shape'] == ['batch', *task.input.shape]
    # served over real HTTP, in both of the task's request forms, answers naming its classes
    env = serving_env(s.store_url, tmp_path / 'reports', MLPROJ_TASK_NAME=name, MLPROJ_SERVING_MODEL=str(version))
    with uvicorn_server(env) as srv:
        for how, kw in _requests(task, X[:6]):
            r = httpx.post(srv.url + '/predict', timeout=60, **kw)
            assert r.status_code == 200, (how, r.text)
            answers = r.json()['predictions']
            assert [a['class'] for a in answers] == [task.classes[a['label']] for a in answers], how
            right = sum(a['label'] == t for a, t in zip(answers, y[:6]))
            assert right >= 3, (how, right, answers)


def _store(s):
    from mlproj.store import Store

    return Store(s.store_url)


class _Broken(Task):
    name, classes, media_types = 'broken', ('a', 'b', 'c'), ('application/json',)
    input = RowInput(('x', 'y'))
    acceptance = load_task('wine').acceptance

    def network(self, width=16, hidden=64):
        import torch

        return torch.nn.Linear(2, 2)  # two outputs for three classes


def test_an_incomplete_or_inconsistent_task_is_refused_naming_the_part_and_the_fix():
    from dataclasses import replace

    from mlproj.task import check_inputs, check_labels, check_network

    t = _Broken()
    with pytest.raises(TaskError, match=r'task broken: `network` maps 2 inputs to shape \(2, 2\), not \(2, 3\)'):
        check_network(t, t.network())
    with pytest.raises(TaskError, match='holds label 3, but the task has 3 classes'):
        check_labels(t, [0, 1, 3], 'dataset version v')
    with pytest.raises(TaskError, match=r'declares \(2,\)'):
        check_inputs(t, np.zeros((4, 3), np.float32), 'its benchmark')
    t.acceptance = replace(t.acceptance, min_macro_f1=None)
    with pytest.raises(TaskError, match='acceptance` leaves min_macro_f1 unset'):
        check_task(t)
    t.input = ImageInput(8, 8)
    with pytest.raises(TaskError, match='values 2..2, outside the declared 0..1'):
        check_inputs(t, np.full((1, 8, 8), 2, np.float32), 'decode')
    with pytest.raises(TaskError, match='neither a shipped task'):
        load_task('no_such_task_module')


def test_a_version_with_labels_outside_the_task_is_refused_before_training(tmp_path):
    from mlproj.data import benchmark_version
    from mlproj.train import config_from_settings, train
    from mlproj.versions import Example, get_version, put_version

    s = make_settings(tmp_path, MLPROJ_TASK_NAME='wine')
    st = _store(s)
    ex = get_version(st, benchmark_version(s))['examples']
    bad = put_version(st, [Example(e.sha256, 7, e.split) for e in ex], 'x', task='wine')
    with pytest.raises(TaskError, match='task wine: dataset version .* holds label 7, but the task has 3 classes'):
        train(config_from_settings(s, bad, tmp_path / 'run', max_epochs=1, wandb_mode='disabled', progress=False))
    assert not (tmp_path / 'run' / 'model.onnx').exists()
