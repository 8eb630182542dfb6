"""Shared fixtures: a project settings object pointing at temporary stores, and a real trained, registered model."""
from pathlib import Path

import pytest

from mlproj.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def make_settings(tmp: Path, **env):
    "The project's settings.ini with the store and reports moved into `tmp` (and any MLPROJ_* overrides)."
    return load_settings(ROOT / 'settings.ini',
                         env={'MLPROJ_PATHS_STORE': str(tmp / 'store'), 'MLPROJ_PATHS_REPORTS': str(tmp / 'reports'), **env})


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture(scope='session')
def trained(tmp_path_factory):
    """A model trained for real on the benchmark (a short run), evaluated and registered as version 1.

    Returns (settings, train_dir, evaluation)."""
    from mlproj.data import benchmark_version
    from mlproj.train import config_from_settings, train
    from mlproj.evaluate import evaluate_run
    from mlproj.registry import Registry
    from mlproj.store import Store
    tmp = tmp_path_factory.mktemp('trained')
    s = make_settings(tmp)
    vid = benchmark_version(s)
    run_dir = tmp / 'reports' / 'runs' / 'train-fixture'
    train(config_from_settings(s, vid, run_dir, max_epochs=10, wandb_mode='disabled', progress=False))
    ev = evaluate_run(run_dir, vid, s.store_url, s.problem)
    Registry(Store(s.store_url)).register(run_dir, ev, train_run='train-fixture', eval_run='eval-fixture',
                                          code_version={'commit': None, 'dirty': None}, parameters={'max_epochs': 10})
    return s, run_dir, ev


@pytest.fixture(scope='session')
def browser():
    """A headless Debian Chromium driven by Playwright (never a downloaded browser); skips, saying how to get one."""
    import shutil
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if not exe: pytest.skip('no chromium on PATH: `apt-get install chromium` (Debian) to run the browser tests')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=['--headless', '--no-sandbox', '--disable-gpu',
                               '--disable-background-networking', '--disable-component-update', '--no-first-run'])
        yield b
        b.close()
