"""The labelling page in Chromium: log in by link, label with the keyboard, undo, see progress."""

import importlib.util

import pytest
from conftest import ROOT, make_settings

from mlproj import annotate as A

spec = importlib.util.spec_from_file_location('annotate_writes', ROOT / 'bench' / 'annotate_writes.py')
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.browser
def test_label_with_the_keyboard_undo_and_see_progress(browser, tmp_path):
    url_db = f'sqlite:///{tmp_path}/a.sqlite'
    s = make_settings(tmp_path, MLPROJ_ANNOTATE_DATABASE=url_db)
    tokens = bench.make_project(s, url_db, n_items=5, n_people=1, overlap=1, name='page')
    db = A.open_db(s, url_db)
    A.create_project(db, 'other', ['x'], [], overlap=1)
    db.close()
    with bench.serve(s, url_db) as (url, _):
        page = browser.new_page()
        page.goto(f'{url}/login/{tokens["a00"]}')
        progress = page.locator('#progress')
        progress.wait_for()
        page.wait_for_function(
            "() => document.getElementById('item').complete && document.getElementById('item').naturalWidth > 0"
        )
        assert 'you: 0 labels' in progress.inner_text() and 'project: 0/5 items' in progress.inner_text()
        first = page.get_attribute('#item', 'data-assignment')
        page.keyboard.press('3')
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '1'")
        assert page.get_attribute('#item', 'data-assignment') != first  # the next item was already there
        assert 'you: 1 labels' in progress.inner_text()  # the project's figures may lag: cached for PROGRESS_EVERY s
        page.keyboard.press('u')
        page.wait_for_function("() => document.getElementById('progress').textContent.includes('you: 0 labels')")
        assert page.get_attribute('#item', 'data-assignment') == first  # undone: the same item, to answer again
        page.keyboard.press('7')
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '2'")
        page.keyboard.press('s')
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '3'")
        page.keyboard.press('?')
        assert page.is_visible('#help')
        page.wait_for_timeout(1000 * A.PROGRESS_EVERY + 200)  # past the cache of the project's figures
        page.reload()
        page.wait_for_function("() => document.getElementById('progress').textContent.includes('project: 1/5 items')")
        page.close()
    db = A.open_db(s, url_db)
    try:
        from sqlalchemy import select

        from mlproj.db import Assignment

        with db.read() as sess:
            rows = {
                r.id: (r.state, r.label)
                for r in sess.execute(select(Assignment.id, Assignment.state, Assignment.label))
            }
        assert rows[int(first)] == ('done', 7)
        assert sorted(v for v in rows.values() if v[0] != 'leased') == [('done', 7), ('skipped', None)]
    finally:
        db.close()


@pytest.mark.browser
@pytest.mark.parametrize('latency_ms', [0, 150])
def test_keys_as_fast_as_the_page_takes_them_label_every_item_once(browser, tmp_path, latency_ms):
    "Whatever the timing (a fast server, or 150 ms on every request), no item comes back after its key, and each stored label is that key."
    url_db = f'sqlite:///{tmp_path}/a.sqlite'
    s = make_settings(tmp_path, MLPROJ_ANNOTATE_DATABASE=url_db)
    n = 24
    tokens = bench.make_project(s, url_db, n_items=n, n_people=1, overlap=1, name='fast')
    with bench.serve(s, url_db) as (url, _):
        page = browser.new_page()
        if (
            latency_ms
        ):  # a slow network: every request and answer takes that long, so saves are in flight while keys come
            cdp = page.context.new_cdp_session(page)
            cdp.send('Network.enable')
            cdp.send(
                'Network.emulateNetworkConditions',
                dict(offline=False, latency=latency_ms, downloadThroughput=-1, uploadThroughput=-1),
            )
        page.goto(f'{url}/login/{tokens["a00"]}')
        pressed, last = [], ''
        while True:  # the next key as soon as the page shows an item it was not showing
            got = page.wait_for_function(
                """([last, n]) => {
                const i = document.getElementById('item'), status = document.getElementById('status').textContent;
                if (status.startsWith('Nothing left') && Number(i.dataset.saved || 0) >= n) return 'end';
                return i.dataset.assignment && i.dataset.assignment !== last ? i.dataset.assignment : false;
            }""",
                arg=[last, len(pressed)],
                polling='raf',
                timeout=20_000,
            ).json_value()
            if got == 'end':
                break
            key = str(len(pressed) * 7 % 10)
            page.keyboard.press(key)
            pressed.append((int(got), int(key)))
            last = got
            assert len(pressed) <= 2 * n, f'the page keeps showing items: {pressed}'
        page.close()
    db = A.open_db(s, url_db)
    try:
        from sqlalchemy import select

        from mlproj.db import Assignment

        with db.read() as sess:
            rows = {
                r.id: (r.item_id, r.state, r.label)
                for r in sess.execute(select(Assignment.id, Assignment.item_id, Assignment.state, Assignment.label))
            }
    finally:
        db.close()
    ids = [aid for aid, _ in pressed]
    assert len(ids) == len(set(ids)) == n, f'shown again after its key: {[a for a in ids if ids.count(a) > 1]}'
    assert len({rows[aid][0] for aid in ids}) == n  # n distinct items, each once
    assert {aid: (rows[aid][1], rows[aid][2]) for aid in ids} == {aid: ('done', key) for aid, key in pressed}


HOSTILE_GUIDE = """# How to label
Press the digit you see. <script>window.pwned = 'script'</script>
<img src="/x" onerror="window.pwned = 'onerror'"> [help](javascript:window.pwned='link') **bold**
"""


@pytest.mark.browser
def test_the_guide_runs_no_script_and_the_pages_carry_a_content_security_policy(browser, tmp_path):
    "A guide's HTML shows as text and its javascript: links go nowhere; the page's own script still runs under the policy."
    url_db = f'sqlite:///{tmp_path}/a.sqlite'
    s = make_settings(tmp_path, MLPROJ_ANNOTATE_DATABASE=url_db)
    db = A.open_db(s, url_db)
    A.create_project(db, 'guided', ['0', '1'], [('cd' * 32, 'image/png')], overlap=1, guide=HOSTILE_GUIDE)
    token, rev = A.add_person(db, 'guided', 'ann'), A.add_person(db, 'guided', 'rev', 'reviewer')
    db.close()
    with bench.serve(s, url_db) as (url, _):
        page = browser.new_page()
        errors = []
        page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        r = page.goto(f'{url}/login/{token}')
        assert "script-src 'self'" in r.headers['content-security-policy']
        page.wait_for_function(
            "() => document.getElementById('progress').textContent.includes('you: 0 labels')"
        )  # annotate.js runs
        guide = page.locator('aside.guide')
        assert guide.locator('h1').inner_text() == 'How to label' and guide.locator('strong').inner_text() == 'bold'
        assert "<script>window.pwned = 'script'</script>" in guide.inner_text()  # shown as text
        assert guide.locator('script, img, [onerror]').count() == 0
        guide.locator('a', has_text='help').click()
        page.wait_for_timeout(200)
        assert page.evaluate('window.pwned') is None
        page.close()
        page = browser.new_page()
        r = page.goto(f'{url}/login/{rev}')
        assert r.url.endswith('/review') and "frame-ancestors 'none'" in r.headers['content-security-policy']
        assert page.locator('aside.guide script').count() == 0 and page.evaluate('window.pwned') is None
        page.close()


PHONE = dict(viewport={'width': 390, 'height': 844}, is_mobile=True, has_touch=True, device_scale_factor=2)


def fits(page) -> bool:
    "No sideways scrolling on a 390 px wide phone."
    return page.evaluate('() => document.documentElement.scrollWidth') <= 390


@pytest.mark.browser
def test_on_a_phone_log_in_by_pasting_the_link_label_and_review_by_tapping(browser, tmp_path):
    "Login, labelling and review pages fit a 390 px phone; every control is a labelled button a finger (or Tab and Enter) works."
    url_db = f'sqlite:///{tmp_path}/a.sqlite'
    s = make_settings(tmp_path, MLPROJ_ANNOTATE_DATABASE=url_db)
    tokens = bench.make_project(s, url_db, n_items=4, n_people=2, overlap=2, name='phone')
    db = A.open_db(s, url_db)
    rev = A.add_person(db, 'phone', 'rita', 'reviewer')
    for k, t in enumerate(tokens.values()):  # the two annotators disagree on three items: three ties to review
        p = A.person_for_token(db, t)
        while (a := A.next_assignment(db, p)) and a['item_id'] <= 3:
            A.answer(db, p, a['id'], (a['item_id'] + k) % 10)
    db.close()
    with bench.serve(s, url_db) as (url, _):
        ctx = browser.new_context(**PHONE)
        page = ctx.new_page()
        r = page.goto(url + '/')
        assert r.status == 401 and page.locator('h1').inner_text() == 'Log in to label' and fits(page)
        page.fill('#link', f'{url}/login/{tokens["a00"]}')  # as pasted from the admin's message
        page.tap('button[type=submit]')
        page.wait_for_function("() => document.getElementById('item').dataset.assignment")
        assert page.url == url + '/' and fits(page)
        buttons = page.locator('#keys button, #actions button')
        assert buttons.count() == 13 and all(t.strip() for t in buttons.all_inner_texts())
        assert all(b['height'] >= 44 for b in (buttons.nth(i).bounding_box() for i in range(13)))  # a finger's size
        page.tap('#keys button[data-label="4"]')
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '1'")
        ctx.close()

        ctx = browser.new_context(**PHONE)
        page = ctx.new_page()
        page.goto(url + '/review')
        page.fill('#link', rev)  # the token alone works too
        page.tap('button[type=submit]')
        page.wait_for_selector('#queue li')
        page.wait_for_load_state('load')  # the list is the server's; its buttons work once review.js has run
        assert page.url == url + '/review' and fits(page)
        items = page.locator('#queue li')
        assert items.count() == 3
        first, second, third = (items.nth(i) for i in range(3))
        first.locator('button.primary').first.tap()  # accept the first vote
        first.locator('.done', has_text='Labelled').wait_for()
        second.locator('summary').tap()  # another label than either vote
        second.locator('.relabel button[data-label="9"]').tap()
        second.locator('.done', has_text='Labelled 9').wait_for()
        assert second.locator('button[aria-pressed=true]').inner_text().endswith('9') and fits(page)
        third.focus()  # with a keyboard: Tab from the item to its first button, Enter presses it
        page.keyboard.press('Tab')
        assert page.evaluate("() => document.activeElement.closest('li') === document.querySelectorAll('#queue li')[2]")
        page.keyboard.press('Enter')
        third.locator('.done', has_text='Labelled').wait_for()
        ctx.close()
    db = A.open_db(s, url_db)
    try:
        from sqlalchemy import select

        from mlproj.db import Review

        with db.read() as sess:
            reviewed = dict(sess.execute(select(Review.item_id, Review.label)).all())
        assert reviewed == {1: 1, 2: 9, 3: 3}  # the first vote of items 1 and 3 (their labels sorted), 9 for item 2
    finally:
        db.close()
