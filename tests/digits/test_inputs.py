"""JSON bodies read from their text (`mlproj.digits_bodies.counts_json`, the digits task's own reader) against the general path (orjson, then `pixels_batch`):
what the fast path reads, it reads exactly as the general path does; every other body it leaves to the general path."""

from __future__ import annotations

import json
import random

import numpy as np
import orjson
import pytest
from sklearn.datasets import load_digits

from mlproj import digits_bodies as inputs
from mlproj.bodies import loads_json
from mlproj.digits_bodies import FAST_JSON_BYTES, counts_json, json_batch, pixels_batch
from mlproj.task import InputError, Unreadable

DIGITS = load_digits().images.astype(int)
DUMPS = {
    'json': json.dumps,
    'compact': lambda o: json.dumps(o, separators=(',', ':')),
    'orjson': lambda o: orjson.dumps(o).decode(),
    'indented': lambda o: json.dumps(o, indent=1),
}


def body(n: int | None, square: bool, dumps=json.dumps) -> bytes:
    "A JSON body of `n` digits (None: one image alone), 64 counts or 8 x 8 each."
    x = DIGITS[: n or 1] if square else DIGITS[: n or 1].reshape(-1, 64)
    return dumps({'pixels': (x[0] if n is None else x).tolist()}).encode()


def general(raw: bytes):
    "What the general path makes of `raw`: the (n, 8, 8) array, or why it refuses it."
    try:
        obj = loads_json(raw)
    except (ValueError, RecursionError):
        return 'not JSON'
    try:
        return pixels_batch(obj, 10**6, raw)
    except InputError as e:
        return f'refused: {e}'


def answer(raw: bytes):
    "What `json_batch` makes of `raw`, the fast path tried whatever its size: the array, or why it refuses it."
    try:
        return json_batch(raw, 10**6)
    except Unreadable:
        return 'not JSON'
    except InputError as e:
        return f'refused: {e}'


@pytest.fixture
def always_fast(monkeypatch):
    monkeypatch.setattr(inputs, 'FAST_JSON_BYTES', 0)


def agrees(raw: bytes) -> bool:
    "Whether the fast path read `raw`; either way `json_batch` must answer as the general path does."
    a, g = answer(raw), general(raw)
    if isinstance(g, np.ndarray):
        np.testing.assert_array_equal(a, g)
    else:
        assert a == g, raw[:120]
    return counts_json(raw) is not None


@pytest.mark.parametrize('style', ['json', 'compact', 'orjson'])
@pytest.mark.parametrize('n', [None, 1, 3, 80])
@pytest.mark.parametrize('square', [False, True])
def test_the_usual_bodies_are_read_from_their_text(style, n, square, always_fast):
    assert agrees(body(n, square, DUMPS[style]))


def test_indented_bodies_go_the_general_way_and_are_read_alike():
    raw = body(40, True, DUMPS['indented'])  # a newline after the last count of a row: left to the general path
    assert counts_json(raw) is None and len(raw) > FAST_JSON_BYTES
    np.testing.assert_array_equal(json_batch(raw, 100), general(raw))


@pytest.mark.parametrize(
    'raw, why',
    [
        (b'{"pixels": [05' + b', 1' * 63 + b']}', 'a leading zero is not JSON'),
        (b'{"pixels": [100' + b', 1' * 63 + b']}', 'three digits'),
        (b'{"pixels": [1 2' + b', 1' * 62 + b']}', 'two numbers in one place is not JSON'),
        (b'{"pixels": [,1' + b', 1' * 63 + b']}', 'an empty place is not JSON'),
        (b'{"pixels": [1' + b', 1' * 63 + b',]}', 'a trailing comma is not JSON'),
        (b'{"pixels": [1' + b', 1' * 62 + b']}', '63 counts'),
        (b'{"pi[]xels": [1' + b', 1' * 63 + b']}', 'another key'),
        (b'{"pixels": [[1' + b', 1' * 63 + b'], [1' + b', 1' * 62 + b']]}', 'ragged'),
        (b'{"pixels": [[[1' + b', 1' * 63 + b']]]}', 'nested too deeply'),
        (b'{"pixels": [1' + b', 1' * 63 + b']', 'no closing brace'),
        (b'{"pixels": [1' + b', 1' * 63 + b']}}', 'two closing braces'),
        (b'{"pixels": []}', 'no counts'),
    ],
)
def test_what_is_not_the_usual_body_is_left_to_the_general_path(raw, why):
    assert counts_json(raw) is None, why


def test_any_body_is_answered_as_the_general_path_answers_it(always_fast):
    "Thousands of bodies one to three edits away from a usual one, with the bytes such bodies hold: never a different array or message."
    rng = random.Random(12)
    alphabet = b'0123456789,[] \n"{}:'
    seeds = [body(n, sq, DUMPS[s]) for n in (None, 1, 2) for sq in (False, True) for s in ('json', 'compact')]
    read = 0
    for _ in range(6000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            i, c = rng.randrange(len(raw)), rng.choice(alphabet)
            op = rng.random()
            if op < 0.4:
                raw[i] = c
            elif op < 0.7:
                raw.insert(i, c)
            else:
                del raw[i]
        read += agrees(bytes(raw))
    assert read > 500  # edits that keep a valid body (a count changed, a space added) are read by the fast path


def test_json_batch_answers_as_the_general_path_does_on_large_bodies():
    big = body(80, False)
    assert len(big) > FAST_JSON_BYTES
    np.testing.assert_array_equal(json_batch(big, 100), general(big))
    out_of_range = big.replace(
        b'[0, 0, 5', b'[0, 0, 17', 1
    )  # 17: read by the fast path, refused in the general path's words
    with pytest.raises(InputError) as e:
        json_batch(out_of_range, 100)
    assert str(e.value) == general(out_of_range).removeprefix('refused: ') and 'pixels[0]' in str(e.value)
    with pytest.raises(InputError, match='80 images in one request; at most 50'):
        json_batch(big, 50)
    with pytest.raises(Unreadable, match='not valid JSON'):
        json_batch(big[:-1], 100)
