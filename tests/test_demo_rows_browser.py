"""The wine task's demo page in Debian's Chromium, served by uvicorn with a wine model trained here: the form is
prefilled from a test row, submitting it shows an answer naming a cultivar, and a bad value shows the server's message
in the page instead of breaking it."""

from __future__ import annotations

import json
import time

import pytest
from conftest import make_settings, serving_env, uvicorn_server

pytestmark = pytest.mark.browser

ANSWERED = (
    "document.getElementById('answer').dataset.version === document.getElementById('row').dataset.version "
    "&& document.getElementById('row').dataset.version !== '0'"
)


def wait_for(page, js, timeout=30.0):
    "Poll `js` until it is true (the page's CSP forbids Playwright's wait_for_function)."
    deadline = time.monotonic() + timeout
    while not page.evaluate(js):
        assert time.monotonic() < deadline, f'still false after {timeout} s: {js}'
        page.wait_for_timeout(50)


@pytest.fixture(scope='module')
def wine_server(tmp_path_factory):
    "(base URL, the served model's first test row): uvicorn serving a wine MLP trained for a few epochs."
    from mlproj.data import benchmark_version, load_split
    from mlproj.evaluate import evaluate_run
    from mlproj.registry import open_registry
    from mlproj.store import Store
    from mlproj.task import load_task
    from mlproj.train import config_from_settings, train

    tmp = tmp_path_factory.mktemp('wine-demo')
    settings = make_settings(tmp, MLPROJ_TASK_NAME='wine')
    vid = benchmark_version(settings)
    run = tmp / 'run'
    train(config_from_settings(settings, vid, run, max_epochs=20, wandb_mode='disabled', progress=False))
    ev = evaluate_run(run, vid, settings.store_url, settings.problem)
    version = open_registry(settings).register(run, ev, train_run='wine-demo')
    X, _ = load_split(Store(settings.store_url), vid, 'test')
    env = serving_env(tmp / 'store', tmp / 'reports', MLPROJ_TASK_NAME='wine', MLPROJ_MODEL=str(version))
    with uvicorn_server(env) as srv:
        yield srv.url, load_task('wine').render(X[0])


def test_the_wine_form_is_prefilled_answers_with_a_cultivar_and_words_a_bad_value(browser, wine_server):
    url, first = wine_server
    page = browser.new_page(viewport={'width': 1000, 'height': 900})
    errors = []
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.goto(url + '/')
    page.wait_for_selector('#row')
    assert page.locator('header.site nav a').all_inner_texts()[0] == 'Try the model'
    shown = {n: float(page.input_value(f'input[name="{n}"]')) for n in first}
    assert shown == pytest.approx(first, rel=1e-5)  # the served model's first test row
    classes = json.loads(page.get_attribute('main', 'data-classes'))

    page.click('#read')
    wait_for(page, ANSWERED)
    assert page.inner_text('#answer').strip() in classes  # a cultivar's name
    assert page.inner_text('#status').strip() == ''

    page.fill('input[name="alcohol"]', '-3')  # a measurement cannot be negative: the server says so, the page shows it
    page.click('#read')
    wait_for(page, ANSWERED + " && document.getElementById('status').textContent !== ''")
    status = page.inner_text('#status')
    assert 'cannot read it' in status and 'alcohol' in status and '>= 0' in status, status
    assert page.inner_text('#answer').strip() not in classes  # the last answer is not left standing

    page.fill('input[name="alcohol"]', str(first['alcohol']))  # fixed: read again
    page.click('#read')
    wait_for(page, ANSWERED + " && document.getElementById('status').textContent === ''")
    assert page.inner_text('#answer').strip() in classes
    assert errors == []  # no script error on the way
    page.close()
