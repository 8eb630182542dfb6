"""Scoring reads the task: a predictions file for the wine benchmark's test split, its labels given as class names (or
indices), is scored with the wine task's three classes and its report's per-class table names them; the scoring page
offers the project task's own benchmark."""

import numpy as np
import pytest
from conftest import make_settings

from mlproj.data import benchmark_version, split_labels
from mlproj.evaluate import split_items
from mlproj.score import ScoreError, named_versions, score_predictions, score_report_html
from mlproj.store import Store

CLASSES = ('barolo', 'grignolino', 'barbera')


def test_a_wine_predictions_file_scores_by_class_name(tmp_path):
    s = make_settings(tmp_path, MLPROJ_TASK_NAME='wine')
    vid = benchmark_version(s)
    st = Store(s.store_url)
    assert named_versions(s)['benchmark'] == vid  # the page offers the wine benchmark, not the digits'
    items, y = split_items(st, vid, 'test'), split_labels(st, vid, 'test')
    guess = np.where(np.arange(len(y)) % 5 == 0, (y + 1) % 3, y)  # one answer in five wrong
    # names in any case, and an index: both are a class
    names = [CLASSES[g].upper() if i % 2 else (str(g) if i % 7 == 0 else CLASSES[g]) for i, g in enumerate(guess)]
    data = ('item,label\n' + ''.join(f'{i},{n}\n' for i, n in zip(items, names))).encode()
    r = score_predictions(st, vid, data, hidden=False)
    assert (r['task'], r['classes']) == ('wine', list(CLASSES))
    assert r['model']['n'] == len(y) and r['model']['accuracy'] == pytest.approx(float(np.mean(guess == y)))
    assert len(r['model']['per_class_recall']) == 3 and np.asarray(r['model']['confusion']).shape == (3, 3)
    html = score_report_html(dict(r, model={k: v for k, v in r['model'].items() if k != 'mistakes'}), st)
    for c, rec in zip(CLASSES, r['model']['per_class_recall']):
        assert f'<tr><th scope="row">{c}</th><td class="num">{rec:.4f}</td>' in html  # the per-class table names them
    bad = (
        'item,label\n' + ''.join(f'{i},{"merlot" if k == 0 else n}\n' for k, (i, n) in enumerate(zip(items, names)))
    ).encode()
    with pytest.raises(ScoreError) as e:
        score_predictions(st, vid, bad)
    assert e.value.errors == [
        "line 2: label 'merlot' is not a class: give a class name (barolo, grignolino, barbera) or its index 0-2"
    ]
    three = ('item,label\n' + ''.join(f'{i},3\n' for i in items)).encode()
    with pytest.raises(ScoreError, match="label '3' is not a class"):
        score_predictions(st, vid, three)  # a digit past the task's classes
