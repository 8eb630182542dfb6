"""A run's record names everything it depended on: a CLI training run reruns to the same metrics after settings.ini
changed, and promotion holds a model to the acceptance criteria in force, naming the one it misses."""

import hashlib
import json
import shutil
import subprocess
import sys

from conftest import ROOT, SHORT_RUN_SERVICE_LIKE

from mlproj.jobs import find_run, read_run
from mlproj.settings import to_env
from mlproj.task import problem_of


def _cli(env: dict, *args):
    "The real CLI of this tree (run from it, so its package is the one imported) with `env` as its whole environment."
    main = 'import sys; from mlproj.cli import main; sys.exit(main(sys.argv[1:]))'
    return subprocess.run(
        [sys.executable, '-c', main, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )


def test_cli_training_run_records_everything_and_reruns_to_the_same_metrics(settings):
    env = {'PATH': '/usr/bin:/bin', 'HOME': str(settings.reports_dir.parent), **to_env(settings)}
    tiny = ['-p', 'max_epochs', '1', '-p', 'limit_train_batches', '3', '-p', 'wandb_mode', 'disabled']
    r = _cli(env, 'train', '--quiet', *tiny)
    assert r.returncode == 0, r.stderr
    first = find_run(settings, job='train')
    a = read_run(first)
    # every parameter of the notebook, with its effective value and where it came from
    assert set(a['parameters']) == set(a['sources']) >= {'max_epochs', 'batch_size', 'lr', 'seed', 'augment'}
    assert [a['sources'][k] for k in ('max_epochs', 'lr', 'dataset_version')] == [
        '-p',
        'settings.ini [train]',
        'benchmark',
    ]
    assert (a['parameters']['lr'], a['seed'], a['dataset_version']) == (
        settings.train.lr,
        settings.train.seed,
        a['metrics']['dataset_version'],
    )
    problem = problem_of(settings)
    assert a['task'] == settings.task.name
    assert a['problem']['statement'] == problem.statement and a['problem']['test_method']
    assert a['problem']['min_test_accuracy'] == problem.min_test_accuracy
    pk = a['packages']
    assert (
        pk['python']
        and pk['torch']
        and pk['lightning']
        and f'torch=={pk["torch"]}' in (first / 'packages.txt').read_text().splitlines()
    )
    cv = a['code_version']
    assert len(cv['commit']) == 40 and isinstance(cv['untracked'], list)
    if cv['dirty']:  # this tree has local edits: the run kept them
        assert hashlib.sha256((first / cv['diff']).read_bytes()).hexdigest() == cv['diff_sha256']

    # settings.ini's training defaults change after the run; the rerun still repeats it, value for value
    changed = dict(env, MLPROJ_TRAIN_SEED='7', MLPROJ_TRAIN_LR='0.02', MLPROJ_TRAIN_BATCH_SIZE='16')
    r = _cli(changed, 'rerun', first.name, '--quiet')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'recorded no' not in r.stdout and 'DIFFERENT' not in r.stdout and 'val_acc' in r.stdout
    second = max((settings.reports_dir / 'runs').iterdir())
    b = read_run(second)
    assert second != first and b['state'] == 'done'
    same = lambda info: {k: v for k, v in info['parameters'].items() if k != 'run_dir'}
    assert same(b) == same(a) and b['seed'] == a['seed'] == settings.train.seed
    assert set(b['sources'].values()) == {f'rerun of {first.name}', 'run_job'}
    # deterministic on CPU with a fixed seed (the Trainer runs with deterministic=True): equal, not close
    assert b['metrics']['history'] == a['metrics']['history'] and b['metrics']['val_acc'] == a['metrics']['val_acc']


def test_promotion_checks_the_criteria_in_force_and_names_the_one_missed(trained, tmp_path):
    s, _, ev = trained
    shutil.copytree(s.store_url, tmp_path / 'store')
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'reports'),
        **SHORT_RUN_SERVICE_LIKE,
    }
    index = tmp_path / 'store' / 'models' / 'index.json'
    assert json.loads(index.read_text())['versions']['1']['accepted'] is True  # it passed when it was evaluated
    raised = f'{ev["model"]["accuracy"] + 0.001:.4f}'  # just above what the model measured
    r = _cli(dict(env, MLPROJ_PROBLEM_MIN_TEST_ACCURACY=raised), 'promote', '1', '--to', 'production')
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'does not meet the acceptance criteria in force' in r.stderr
    assert (
        f'below {float(raised)} ([problem] min_test_accuracy; {ev["criteria"]["min_test_accuracy"]} when it was evaluated)'
        in r.stderr
    ), r.stderr
    assert 'production' not in json.loads(index.read_text())['aliases']  # nothing moved
    r = _cli(env, 'promote', '1', '--to', 'production')  # the criteria it was evaluated under: it goes
    assert r.returncode == 0 and 'production -> version 1' in r.stdout, r.stderr
