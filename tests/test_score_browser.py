"""The scoring page in Chromium: a bad file shows its problems with line numbers; a good one shows the report and
its row on the leaderboard."""

import pytest
from conftest import SHORT_RUN_SERVICE_LIKE, uvicorn_server
from test_api import server_env

from mlproj.data import split_labels
from mlproj.evaluate import split_items
from mlproj.store import Store


@pytest.mark.browser
def test_upload_a_scoring_file_and_see_the_report_and_the_leaderboard_row(browser, trained, tmp_path):
    settings, _, ev = trained
    st = Store(settings.store_url)
    items, y = split_items(st, ev['dataset_version'], 'test'), split_labels(st, ev['dataset_version'], 'test')
    good = (
        'item,label,confidence\n'
        + ''.join(f'{i},{(l + 1) % 10 if k % 4 == 0 else l},0.9\n' for k, (i, l) in enumerate(zip(items, y)))
    ).encode()
    bad = b'item,label\n' + f'{items[0]},3\nnot-an-item,4\n'.encode()
    with uvicorn_server(server_env(trained, tmp_path, MLPROJ_MODEL='1', **SHORT_RUN_SERVICE_LIKE)) as srv:
        url = srv.url
        page = browser.new_page()
        page.goto(f'{url}/score')
        assert page.locator('#board tbody').inner_text().strip() == 'no submissions yet'
        page.set_input_files('#file', files=[dict(name='bad.csv', mimeType='text/csv', buffer=bad)])
        page.click('button[type=submit]')
        page.wait_for_selector('#errors li')
        problems = page.locator('#errors li').all_inner_texts()
        assert (
            problems[0]
            == "line 3: unknown item id 'not-an-item': it is not in the test split of dataset version "
            + ev['dataset_version']
        )
        page.set_input_files('#file', files=[dict(name='good.csv', mimeType='text/csv', buffer=good)])
        page.fill('#name', 'browser team')
        page.click('button[type=submit]')
        page.wait_for_selector('#report img.figure')
        assert page.locator('#errors li').count() == 0
        assert 'accuracy 0.7' in page.inner_text('#status') and 'rank 1' in page.inner_text('#status')
        for title in ('Summary', 'Calibration', 'Accuracy by slice'):
            assert page.locator('#report h2', has_text=title).count() == 1
        assert (
            page.locator('#report h2', has_text='Most confident mistakes').count() == 0
        )  # the test labels stay hidden
        assert 'is now yours' in page.inner_text('#status')  # the first submission under the name claimed it
        page.fill('#name', 'Browser Team')  # the same name: the claim token this browser kept is sent
        page.click('button[type=submit]')
        page.wait_for_selector('#board tr.mine >> nth=0')
        page.wait_for_function(
            "() => document.querySelectorAll('#board tbody tr').length == 2"
        )  # a function: the page's CSP forbids eval
        assert 'Scored' in page.inner_text('#status') and 'is now yours' not in page.inner_text('#status')
        row = page.locator('#board tr.mine')
        assert row.locator('td').nth(1).inner_text() == 'Browser Team' and row.locator('td').nth(0).inner_text() == '2'
        page.reload()  # the leaderboard is kept by the server, not the page
        assert 'browser team' in page.locator('#board').inner_text()
        page.close()


@pytest.mark.browser
def test_the_scoring_page_fits_a_phone_and_names_its_leaderboard(browser, trained, tmp_path):
    "At 390 px: no sideways scrolling, every control labelled and finger-sized, the leaderboard named by its dataset, not its hash."
    settings, _, ev = trained
    vid = ev['dataset_version']
    with uvicorn_server(server_env(trained, tmp_path, MLPROJ_MODEL='1', **SHORT_RUN_SERVICE_LIKE)) as srv:
        ctx = browser.new_context(viewport={'width': 390, 'height': 844}, is_mobile=True, has_touch=True)
        page = ctx.new_page()
        page.goto(f'{srv.url}/score?version={vid}')
        assert page.evaluate('() => document.documentElement.scrollWidth') <= 390
        assert page.evaluate(
            "() => [...document.querySelectorAll('#upload input, #upload select')].every(e => e.labels.length === 1)"
        )
        for control in page.locator('#upload input, #upload select, #upload button').all():
            assert (
                control.bounding_box()['height'] >= 44
                and control.bounding_box()['x'] + control.bounding_box()['width'] <= 390
            )
        heading = page.locator('h2', has_text='Leaderboard').inner_text()
        assert heading == 'Leaderboard: test split of benchmark' and vid not in heading
        about = page.inner_text('#board-about')
        assert 'UCI handwritten digits benchmark' in about and f'version {vid[:8]}' in about  # the id in small print
        page.select_option('#version', 'service-like')
        page.wait_for_function(
            "() => document.getElementById('board-version').textContent === 'test split of service-like'"
        )
        assert 'service-like evaluation set' in page.inner_text('#board-about')
        assert page.evaluate('() => document.documentElement.scrollWidth') <= 390
        ctx.close()
