"""Annotation reads the task: a wine project's items are rows shown as a table (page and API), its labels are the
task's classes by default and its consensus is a dataset version of the wine task; a project of twelve labels is
answered through the searchable list, on the labelling page and on the review page."""

import importlib.util
from types import SimpleNamespace

import httpx
import pytest
from conftest import ROOT, make_settings

from mlproj import annotate as A
from mlproj.items import Provenance, put_item
from mlproj.store import Store
from mlproj.task import load_task
from mlproj.versions import Example, get_version, put_version

spec = importlib.util.spec_from_file_location('annotate_writes', ROOT / 'bench' / 'annotate_writes.py')
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

FRUIT = ['apple', 'apricot', 'banana', 'cherry', 'date', 'elderberry', 'fig', 'grape', 'kiwi', 'lemon', 'lime', 'mango']


def wine_version(s, n=3):
    "The first `n` wine benchmark rows as raw items, in a dataset version of the wine task."
    store, b = Store(s.store_url), load_task('wine').benchmark()
    shas = [put_item(store, b.items[i], Provenance('test', b.media_type)) for i in range(n)]
    vid = put_version(store, [Example(h, b.labels[i], 'train') for i, h in enumerate(shas)], 'benchmark', task='wine')
    return vid, shas, b


@pytest.mark.browser
def test_a_wine_project_shows_rows_as_a_table_labels_by_class_and_exports_a_wine_version(browser, tmp_path):
    from mlproj.suggest import cmd_create

    url_db = f'sqlite:///{tmp_path}/a.sqlite'
    s = make_settings(tmp_path, MLPROJ_TASK_NAME='wine', MLPROJ_ANNOTATE_DATABASE=url_db)
    vid, shas, b = wine_version(s)
    args = dict(split=None, limit=None, guide=None, labels=None, overlap=1, uncertainty_first=False)
    cmd_create(SimpleNamespace(name='wines', version=vid, suggest_to_annotators=False, **args), s)
    db = A.open_db(s, url_db)
    try:
        assert A.get_project(db, 'wines').labels == ['barolo', 'grignolino', 'barbera']  # the task's classes
        token = A.add_person(db, 'wines', 'ann')
    finally:
        db.close()
    with bench.serve(s, url_db) as (url, _):
        with httpx.Client(base_url=url, headers={'authorization': f'Bearer {token}'}) as api:
            first = api.get('/api/next').json()['next']
            row = api.get(f'/api/items/{first["item_id"]}/row')
            assert row.status_code == 200 and row.json()['task'] == 'wine'
            assert row.json()['features'][0] == dict(name='alcohol', value=14.23, unit='% vol')  # benchmark row 0
            assert [f['name'] for f in row.json()['features']] == list(load_task('wine').input.features)
            img = api.get(first['image'])
            assert img.status_code == 415 and f'/api/items/{first["item_id"]}/row' in img.json()['detail']
        page = browser.new_page()
        errors = []
        page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        page.goto(f'{url}/login/{token}')
        page.wait_for_function("() => document.querySelectorAll('#item tbody tr').length === 13")
        assert page.locator('img#item').count() == 0  # a table, not an image
        cells = page.locator('#item tbody tr').first.locator('th, td').all_inner_texts()
        assert cells == ['alcohol', '14.23', '% vol']
        keys = [' '.join(t.split()) for t in page.locator('#keys button').all_inner_texts()]
        assert keys == ['0 barolo', '1 grignolino', '2 barbera']
        shown = page.get_attribute('#item', 'data-item')
        page.keyboard.press('2')  # barbera
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '1'")
        page.wait_for_function(f"() => document.getElementById('item').dataset.item !== '{shown}'")
        second = page.locator('#item tbody tr').nth(1).locator('td').first.inner_text()
        assert float(second) == pytest.approx(float(b.items[int(shown)].split(b'"malic_acid": ')[1].split(b',')[0]))
        page.keyboard.press('0')
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '2'")
        assert not errors, errors
        page.close()
    db = A.open_db(s, url_db)
    try:
        new, counts = A.export_consensus(db, s, 'wines')
    finally:
        db.close()
    v = get_version(Store(s.store_url), new)
    assert v['meta']['task'] == 'wine' and counts['majority'] == 2
    labels = {e.sha256: e.label for e in v['examples'] if e.source == 'consensus'}
    assert sorted(labels.values()) == [0, 2] and labels[shas[int(shown) - 1]] == 2  # barbera: the class's index


@pytest.mark.browser
def test_twelve_labels_are_answered_through_the_searchable_list_and_reviewed_by_name(browser, tmp_path):
    import numpy as np

    from mlproj.digits import UCI_MEDIA_TYPE, encode_counts

    url_db = f'sqlite:///{tmp_path}/a.sqlite'
    s = make_settings(tmp_path, MLPROJ_ANNOTATE_DATABASE=url_db)
    store = Store(s.store_url)
    items = [
        (put_item(store, encode_counts(np.full((8, 8), i)), Provenance('t', UCI_MEDIA_TYPE)), UCI_MEDIA_TYPE)
        for i in range(3)
    ]
    db = A.open_db(s, url_db)
    try:
        A.create_project(db, 'fruit', FRUIT, items, overlap=2)
        ann, rev = A.add_person(db, 'fruit', 'ann'), A.add_person(db, 'fruit', 'rev', 'reviewer')
        bob = A.person_for_token(db, A.add_person(db, 'fruit', 'bob'))
        for _ in range(3):  # bob says apple to all three
            A.answer(db, bob, A.next_assignment(db, bob)['id'], 0)
    finally:
        db.close()
    with bench.serve(s, url_db) as (url, _):
        page = browser.new_page()
        page.goto(f'{url}/login/{ann}')
        page.wait_for_function("() => document.getElementById('item').dataset.assignment")
        assert page.locator('#choices kbd').count() == 0 and page.locator('#choices button').count() == 12
        assert page.evaluate('() => document.activeElement.id') == 'find'  # ready to type
        page.keyboard.type('an')
        visible = page.locator('#choices button:visible')
        assert visible.all_inner_texts() == ['banana', 'mango']
        page.keyboard.press('Enter')  # the first shown: banana
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '1'")
        assert page.input_value('#find') == '' and page.locator('#choices button:visible').count() == 12
        page.keyboard.type('MANGO')
        page.keyboard.press('Enter')
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '2'")
        page.keyboard.press('Escape')  # out of the box: s skips
        page.keyboard.press('1')  # digits answer nothing with twelve labels
        page.keyboard.press('s')
        page.wait_for_function("() => document.getElementById('item').dataset.saved === '3'")
        page.close()

        page = browser.new_page()
        page.goto(f'{url}/login/{rev}')
        items = page.locator('#queue li')
        assert items.count() == 2  # apple against banana, apple against mango
        assert items.first.locator('.facts').inner_text().startswith('Item 1: votes apple, banana')
        items.first.locator('summary').click()
        items.first.locator('input.find').fill('kiw')
        assert items.first.locator('.relabel button:visible').all_inner_texts() == ['kiwi']
        items.first.locator('input.find').press('Enter')
        items.first.locator('.done', has_text='Labelled kiwi').wait_for()
        page.close()
    db = A.open_db(s, url_db)
    try:
        from sqlalchemy import select

        from mlproj.db import Assignment, Review

        with db.read() as sess:
            reviewed = dict(sess.execute(select(Review.item_id, Review.label)).all())
            mine = sorted(sess.execute(select(Assignment.item_id, Assignment.state, Assignment.label)).all())
        assert reviewed == {1: FRUIT.index('kiwi')}
        assert [m for m in mine if m[2] != 0] == [(1, 'done', 2), (2, 'done', 11), (3, 'skipped', None)]
        with pytest.raises(ValueError, match="label 'kiwi' is not a class of task digits"):
            A.export_consensus(db, s, 'fruit')  # a dataset version holds the task's classes, not these
    finally:
        db.close()


def test_a_project_takes_up_to_a_thousand_labels_and_says_so_beyond(tmp_path):
    s = make_settings(tmp_path)
    db = A.open_db(s, f'sqlite:///{tmp_path}/a.sqlite')
    try:
        A.create_project(db, 'big', [f'c{i}' for i in range(A.MAX_LABELS)], [], overlap=1)
        assert len(A.get_project(db, 'big').labels) == 1000
        with pytest.raises(ValueError, match='1 to 1000 labels, got 1001'):
            A.create_project(db, 'bigger', [f'c{i}' for i in range(1001)], [], overlap=1)
    finally:
        db.close()
