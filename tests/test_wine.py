"""The wine task's preprocessing and service-like set: what a client sends becomes the benchmark's own numbers."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_wine

from mlproj.task import InputError, check_inputs, load_task
from mlproj.wine import FEATURES, TYPICAL, UNITS, cultivar_rows

TASK = load_task('wine')
ROWS = load_wine().data


def row(i=0) -> dict:
    return dict(zip(FEATURES, ROWS[i].tolist()))


def test_every_benchmark_item_decodes_to_its_row_and_back_through_render():
    b = TASK.benchmark()
    X = np.stack([TASK.decode(x, b.media_type) for x in b.items])
    assert np.array_equal(X, ROWS.astype(np.float32))
    assert len(set(b.items)) == len(b.items)  # no two wines share an item (a digest)
    assert np.array_equal(TASK.prepare(TASK.render(X[5])), X[5])


def test_other_units_missing_and_reordered_fields_give_the_clean_vector():
    clean, want = row(3), ROWS[3].astype(np.float32)
    converted = {
        **clean,
        'alcohol': f'{clean["alcohol"] / 100} vol fraction',
        'magnesium': f'{clean["magnesium"] / 1000} g/L',
        'proline': f'{clean["proline"] / 1000} G/L',
        'malic_acid': f'{clean["malic_acid"] * 1000} mg/l',
        'alcalinity_of_ash': f'{clean["alcalinity_of_ash"] / 1000} eq/L',
    }
    np.testing.assert_allclose(TASK.prepare(converted), want, rtol=1e-6)
    keys = list(clean)[::-1]
    assert np.array_equal(TASK.prepare({k: clean[k] for k in keys}), want)
    sk = dict(zip(load_wine().feature_names, ROWS[3].tolist()))  # scikit-learn's names are read too
    assert np.array_equal(TASK.prepare(sk), want)
    gap = {k: v for k, v in clean.items() if k != 'flavanoids'}
    got = TASK.prepare(gap)
    assert got[FEATURES.index('flavanoids')] == np.float32(TYPICAL[FEATURES.index('flavanoids')])
    assert np.array_equal(np.delete(got, FEATURES.index('flavanoids')), np.delete(want, FEATURES.index('flavanoids')))


@pytest.mark.parametrize(
    'change, message',
    [
        ({'alcool': 13.0}, "unknown feature 'alcool': did you mean 'alcohol'"),
        ({'hue': 'pale'}, "hue: 'pale' is not a number"),
        ({'hue': True}, 'hue: True (bool) is not a number'),
        ({'proline': float('nan')}, 'proline: nan is not a finite measurement'),
        ({'proline': float('inf')}, 'proline: inf is not a finite measurement'),
        ({'ash': -2.0}, 'ash: -2.0 is not a finite measurement >= 0'),
        ({'magnesium': '4 mmol/L'}, "magnesium: unit 'mmol/L' is not one it can be sent in; it is in mg/L"),
        ({'alcohol': '13 g/L'}, "alcohol: unit 'g/L' is not one it can be sent in; it is in % vol"),
        ({'hue': '1.0 g/L'}, 'hue: unit'),
    ],
)
def test_bad_fields_are_refused_naming_the_field(change, message):
    with pytest.raises(InputError, match=message.replace('(', r'\(').replace(')', r'\)')):
        TASK.prepare({**row(), **change})


def test_bad_rows_are_refused():
    with pytest.raises(InputError, match='gives none of the features'):
        TASK.prepare({})
    with pytest.raises(InputError, match='got 12'):
        TASK.prepare(ROWS[0][:12].tolist())
    with pytest.raises(InputError, match=r'got \(1, 13\)'):
        TASK.prepare(ROWS[:1])
    with pytest.raises(InputError, match='not bytes'):
        TASK.prepare(json.dumps(row()).encode())
    with pytest.raises(InputError, match='must be JSON'):
        TASK.decode(b'{"alcohol": ', 'application/json')


def test_service_like_rows_are_new_wines_as_a_service_receives_them():
    a = TASK.acceptance
    sl = TASK.service_like(a.service_like_seed, 10)
    assert sl == TASK.service_like(a.service_like_seed, 10)  # the seed decides it
    assert sl != TASK.service_like(a.service_like_seed + 1, 10)
    assert [s[2] for s in sl] == [0] * 10 + [1] * 10 + [2] * 10
    causes = [s[3]['cause'] for s in sl]
    assert {c: causes.count(c) for c in causes} == dict.fromkeys(('clean', 'units', 'missing', 'reordered', 'noise'), 6)
    X = check_inputs(TASK, np.stack([TASK.decode(x, mt) for x, mt, _, _ in sl]), 'the service-like set')
    drawn = cultivar_rows(a.service_like_seed, 10)[0]
    bench = {tuple(r) for r in ROWS.astype(np.float32)}
    assert not bench & {tuple(r) for r in X}  # never a benchmark row
    for (data, _, _, s), x, d in zip(sl, X, drawn):
        sent = json.loads(data)
        if s['cause'] in ('clean', 'units', 'reordered'):  # the same wine, however it was written
            np.testing.assert_allclose(x, d, rtol=1e-5)
        if s['cause'] == 'units':
            assert any(isinstance(v, str) for v in sent.values())
        if s['cause'] == 'missing':
            assert 11 <= len(sent) <= 12
        if s['cause'] == 'noise':
            assert not np.allclose(x, d, rtol=1e-3)
            np.testing.assert_allclose(x, d, rtol=0.3)


def test_the_declared_input_matches_the_module():
    assert TASK.input.features == FEATURES and TASK.input.units == UNITS
    assert TASK.classes == ('barolo', 'grignolino', 'barbera')
    assert TASK.show_as == 'row' and TASK.slice_keys == ('cause',)
