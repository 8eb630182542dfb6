"""The runs index in Debian's Chromium, on real runs made by `run_job` as the CLI makes them: ticked runs compared
with their differences and better values marked, the state kept in the address (Back, Forward, a typed address),
a figure drawn across runs, no horizontal scroll on a phone, the same page from the API (under its CSP) and from disk."""

import pytest
from conftest import SHORT_RUN_SERVICE_LIKE, ServerProcess, make_settings, serving_env, uvicorn_argv

from mlproj.jobs import run_job

pytestmark = pytest.mark.browser


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "Settings and the ids of two short training runs that differ in epochs and learning rate, and an evaluation of the second."
    s = make_settings(tmp_path_factory.mktemp('runs'), **SHORT_RUN_SERVICE_LIKE)
    base = dict(limit_train_batches=2, wandb_mode='disabled')
    t1 = run_job(s, 'train', dict(base, max_epochs=1), progress=False).name
    t2 = run_job(s, 'train', dict(base, max_epochs=2, lr=0.01), progress=False).name
    ev = run_job(s, 'evaluate', dict(train_run=t2), progress=False).name
    return s, t1, t2, ev


@pytest.fixture(scope='module')
def index_url(runs):
    "The index as the API serves it (no model needed: it is ready for reports before it is for predictions)."
    s = runs[0]
    with ServerProcess(uvicorn_argv(), serving_env(s.store_url, s.reports_dir), ready='/health') as srv:
        yield f'{srv.url}/reports/'


def hash_of(page) -> str:
    return page.evaluate('() => decodeURIComponent(location.hash)')


def cells(page, key) -> list[str]:
    return page.locator(f'#compare tr[data-key="{key}"] td').all_inner_texts()


def test_ticked_runs_are_compared_with_differences_and_better_values_marked(browser, runs, index_url):
    _, t1, t2, ev = runs
    page = browser.new_page()
    problems = []
    page.on('console', lambda m: problems.append(m.text) if m.type == 'error' else None)
    page.on('pageerror', lambda e: problems.append(str(e)))
    page.goto(index_url)
    page.check(f'input.pick[value="{t1}"]')
    page.check(f'input.pick[value="{t2}"]')
    page.wait_for_selector('#compare table.cmp')
    assert hash_of(page) == f'#compare={t1},{t2}'
    # the parameters that differ are shown and marked; those that do not are shown unmarked
    assert cells(page, 'max_epochs') == ['1', '2'] and page.locator('#compare tr.diff[data-key="max_epochs"]').count()
    assert cells(page, 'lr') == ['0.0030', '0.0100'] and page.locator('#compare tr.diff[data-key="lr"]').count()
    assert cells(page, 'limit_train_batches') == ['2', '2']
    assert page.locator('#compare tr[data-key="limit_train_batches"]:not(.diff)').count() == 1
    # a figure with a direction: the lower loss is marked as the better one, and only it
    loss = page.locator('#compare tr[data-key="val_loss"] td')
    values = [float(t.split()[0]) for t in loss.all_inner_texts()]
    best = page.locator('#compare tr[data-key="val_loss"] td.best')
    assert values[0] != values[1] and best.count() == 1 and float(best.inner_text().split()[0]) == min(values)
    assert page.locator('#compare tr[data-key="epochs"] td.best').count() == 0  # epochs: no direction, nothing marked

    page.select_option('#f-job', 'evaluate')  # a filter: the training runs leave the list, the comparison stays
    assert hash_of(page) == f'#compare={t1},{t2}&job=evaluate'
    assert page.locator(f'tr[data-run="{t1}"]').is_hidden() and page.locator(f'tr[data-run="{ev}"]').is_visible()
    assert page.locator('#compare table.cmp').count() == 1

    page.go_back()  # the filter is undone
    page.wait_for_function('() => document.getElementById("f-job").value === ""')
    assert hash_of(page) == f'#compare={t1},{t2}' and page.locator(f'tr[data-run="{t1}"]').is_visible()
    page.go_back()  # one tick undone: no comparison of one run
    page.wait_for_function('() => !document.querySelector("#compare table.cmp")')
    assert hash_of(page) == f'#compare={t1}' and not page.is_checked(f'input.pick[value="{t2}"]')
    page.go_forward()
    page.wait_for_selector('#compare table.cmp')
    assert page.is_checked(f'input.pick[value="{t2}"]') and cells(page, 'max_epochs') == ['1', '2']

    # an address typed while the page is open: another pair, and the figure to draw
    page.goto(f'{index_url}#compare={t2},{ev}&metric=val_acc')
    page.wait_for_function(f'() => document.querySelectorAll("#compare th[scope=col] a")[1]?.textContent === "{ev}"')
    assert page.is_checked(f'input.pick[value="{ev}"]') and not page.is_checked(f'input.pick[value="{t1}"]')
    assert cells(page, 'model') == [t2, t2]  # the evaluation's model is the one the training run made
    assert page.locator('#compare tr[data-key="service_like_accuracy"] td').count() == 2
    assert page.input_value('#metric') == 'val_acc'
    dots = page.locator('#chart circle')
    assert dots.count() == 3  # every run has a validation accuracy, the evaluation its training run's
    assert page.locator('#chart circle.on').count() == 2
    page.locator(f'#chart circle[data-run="{t1}"]').click()  # a point ticks its run
    page.wait_for_function('() => document.querySelectorAll("#chart circle.on").length === 3')
    assert hash_of(page) == f'#compare={t2},{ev},{t1}&metric=val_acc'
    assert page.locator('#compare th[scope=col]').count() == 4  # the row heading and three runs
    assert problems == []  # the page's script ran under the API's Content-Security-Policy, with no error
    page.close()


def test_on_a_phone_the_page_does_not_scroll_sideways(browser, runs, index_url):
    _, t1, t2, ev = runs
    page = browser.new_page(viewport={'width': 390, 'height': 844}, is_mobile=True, has_touch=True)
    page.goto(f'{index_url}#compare={t1},{t2}')
    page.wait_for_selector('#compare table.cmp')
    page.wait_for_selector('#chart svg')
    assert page.evaluate('() => document.documentElement.scrollWidth') <= 390
    assert page.evaluate('() => document.body.scrollWidth') <= 390
    assert page.locator('#chart svg').bounding_box()['width'] <= 390
    page.tap(f'input.pick[value="{t1}"]')  # a finger unticks a run
    page.wait_for_function('() => !document.querySelector("#compare table.cmp")')
    page.select_option('#f-job', 'evaluate')  # a filter hides the cards of other jobs too
    assert page.locator(f'tr[data-run="{t1}"]').is_hidden() and page.locator(f'tr[data-run="{ev}"]').is_visible()
    page.close()


def test_the_index_works_opened_from_disk(browser, runs):
    s, t1, t2, ev = runs
    page = browser.new_page()
    url = (s.reports_dir / 'index.html').as_uri()
    page.goto(f'{url}#compare={t1},{t2}&job=train')
    page.wait_for_selector('#compare tr.diff[data-key="max_epochs"]')
    assert page.locator(f'tr[data-run="{ev}"]').is_hidden()
    page.goto(f'{url}#job=evaluate')  # typed: the same file, another state
    page.wait_for_function('() => !document.querySelector("#compare table.cmp")')
    assert page.locator(f'tr[data-run="{ev}"]').is_visible() and page.locator(f'tr[data-run="{t1}"]').is_hidden()
    page.go_back()
    page.wait_for_selector('#compare table.cmp')
    page.close()
