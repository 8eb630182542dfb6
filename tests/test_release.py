"""`mlproj release`: a release stopped at the acceptance gate changes nothing; a release that passes reaches the server."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SHORT_RUN_SERVICE_LIKE, make_settings
from test_release_reload import _serve

from mlproj.registry import Registry
from mlproj.release import STEPS, ReleaseFailed, release
from mlproj.store import Store

# one short epoch on a few batches: the release's mechanics, not the model's quality, are under test
TINY = {'max_epochs': 1, 'limit_train_batches': 4, 'wandb_mode': 'disabled'}
# acceptance criteria any model meets, for a release that should pass the gate with a one-epoch model
EASY = dict(
    SHORT_RUN_SERVICE_LIKE,
    MLPROJ_PROBLEM_MIN_TEST_ACCURACY='0',
    MLPROJ_PROBLEM_MIN_MACRO_F1='0',
    MLPROJ_PROBLEM_MIN_CLASS_RECALL='0',
    MLPROJ_PROBLEM_MIN_SERVICE_LIKE_ACCURACY='0',
    MLPROJ_PROBLEM_MAX_SERVICE_LIKE_GAP='1',
)


def _store_on_production_1(trained, tmp: Path) -> Registry:
    settings, _, _ = trained
    shutil.copytree(Path(settings.store_url), tmp / 'store')
    reg = Registry(Store(str(tmp / 'store')))
    reg.set_alias('production', 1, by='test', reason='start on 1', force=True)
    return reg


def test_release_stopped_at_gate_changes_nothing(trained, tmp_path):
    reg = _store_on_production_1(trained, tmp_path)
    index = (tmp_path / 'store' / 'models' / 'index.json').read_bytes()
    settings = make_settings(
        tmp_path, **SHORT_RUN_SERVICE_LIKE, MLPROJ_PROBLEM_MIN_TEST_ACCURACY='1.01'
    )  # no model can pass
    with pytest.raises(ReleaseFailed) as e:
        release(settings, allow_dirty=True, tests='none', params=TINY, servers=[], progress=None)
    assert e.value.step == 'gate' and 'acceptance FAILED' in e.value.reason and 'accuracy' in e.value.reason
    assert [s['step'] for s in e.value.steps] == list(STEPS[: STEPS.index('gate') + 1])
    assert [s['ok'] for s in e.value.steps][-3:] == [True, True, False]
    assert (tmp_path / 'store' / 'models' / 'index.json').read_bytes() == index  # nothing registered, no alias moved
    assert reg.resolve('production') == 1 and [r['version'] for r in reg.listing()] == [1]


@pytest.mark.full  # two job kernels and a server: over a minute on these 2 cores
def test_release_end_to_end_switches_the_server(trained, tmp_path):
    "The command: every step ok, production on the new version, the running server answering with it, the history saying how."
    reg = _store_on_production_1(trained, tmp_path)
    with _serve(tmp_path) as srv:
        url = srv.url
        assert httpx.get(f'{url}/ready').headers['x-model-version'] == '1'
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith('MLPROJ_')},
            **EASY,
            'MLPROJ_SETTINGS': str(ROOT / 'settings.ini'),
            'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
            'MLPROJ_PATHS_REPORTS': str(tmp_path / 'reports'),
        }
        tiny = [a for k, v in TINY.items() for a in ('-p', k, str(v))]
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / 'mlproj'),
                'release',
                '--allow-dirty',
                '--tests',
                'none',
                '--server',
                url,
                '--reason',
                'e2e test',
                '-q',
                *tiny,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        table = out.stdout.splitlines()
        for step in STEPS:
            assert any(l.startswith(f'{step} ') and ' ok: ' in l for l in table), out.stdout
        assert 'version 2 is production' in out.stdout
        assert reg.resolve('production') == 2
        assert httpx.get(f'{url}/ready').headers['x-model-version'] == '2'
        last = reg.history('production')[-1]
        assert (last['from'], last['to']) == (1, 2) and 'mlproj release of commit' in last['reason']
        assert '--tests none' in last['reason'] and 'e2e test' in last['reason']


@pytest.mark.full
def test_release_refuses_a_server_that_does_not_switch(trained, tmp_path):
    "A server that keeps serving the old version: the release fails at switch and production goes back to it."
    reg = _store_on_production_1(trained, tmp_path)
    with _serve(tmp_path, MLPROJ_SERVING_MODEL='1') as srv:  # pinned to version 1: it never switches
        url = srv.url
        settings = make_settings(tmp_path, **EASY)
        with pytest.raises(ReleaseFailed) as e:
            release(settings, allow_dirty=True, tests='none', params=TINY, servers=[url], timeout=2, progress=None)
        assert (
            e.value.step == 'switch'
            and f'{url} still serves 1' in e.value.reason
            and 'back on version 1' in e.value.reason
        )
        assert reg.resolve('production') == 1 and [h['to'] for h in reg.history('production')][-2:] == [2, 1]


def test_release_runs_as_a_job_notebook(settings):
    "nbs/jobs/release.ipynb passes its parameters to `release` (so the queue can run it): a bad one fails the job saying why."
    from mlproj.jobs import JobFailed, run_job

    # begin-only-with: queue
    from mlproj.queue import job_kinds, job_signature

    assert 'release' in job_kinds(settings) and job_signature(settings, 'release')['allow_dirty'] == 'bool'
    # end-only-with: queue
    with pytest.raises(JobFailed) as e:
        run_job(settings, 'release', dict(allow_dirty=True, tests='all'), progress=False)
    assert 'tests must be one of notebooks, fast, none' in str(e.value)
