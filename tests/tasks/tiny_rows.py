"""A tiny row task defined inside the tests, not in the package: three sizes of parcel from length, width (cm) and
weight (g). `load_task('tests.tasks.tiny_rows')` loads it, as settings.ini `[task] name = tests.tasks.tiny_rows` would."""

from __future__ import annotations

import json

import numpy as np

from mlproj.settings import Problem
from mlproj.task import Benchmark, InputError, RowInput, Task

FEATURES, UNITS = ('length', 'width', 'weight'), ('cm', 'cm', 'g')
TO_BASE = {'cm': ('cm', 1.0), 'mm': ('cm', 0.1), 'm': ('cm', 100.0), 'g': ('g', 1.0), 'kg': ('g', 1000.0)}
CENTRES = np.array([[10, 8, 200], [30, 20, 1500], [60, 40, 6000]], np.float32)  # small, medium, large


def rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    "`n` rows of each class around its centre, and their labels."
    rng = np.random.default_rng(seed)
    X = np.concatenate([c * rng.uniform(0.8, 1.2, (n, 3)) for c in CENTRES]).astype(np.float32)
    return X, np.repeat(np.arange(3), n)


class TinyRows(Task):
    "Sort a parcel into small, medium or large."

    name = 'tiny_rows'
    title = 'parcel size from its length, width and weight (a test task)'
    classes = ('small', 'medium', 'large')
    input = RowInput(FEATURES, UNITS)
    media_types = ('application/json',)
    acceptance = Problem(
        min_test_accuracy=0.9,
        min_macro_f1=0.9,
        min_class_recall=0.8,
        min_service_like_accuracy=0.8,
        max_service_like_gap=0.1,
        service_like_seed=1,
        service_like_per_class=5,
    )
    show_as = 'row'

    def benchmark(self) -> Benchmark:
        X, y = rows(30)
        return Benchmark(
            items=[json.dumps(dict(zip(FEATURES, map(float, x)))).encode() for x in X],
            labels=y.tolist(),
            media_type='application/json',
            source='tests/tasks/tiny_rows.py',
            licence='CC0',
            label_source='the generator',
            description='parcels around three centres',
        )

    def decode(self, data: bytes, media_type: str) -> np.ndarray:
        return self.prepare(json.loads(data))

    def prepare(self, x) -> np.ndarray:
        "A row {feature: number or 'number unit'}; lengths in mm, cm or m, weights in g or kg."
        if not isinstance(x, dict):
            return np.asarray(x, np.float32).reshape(3)
        out = np.empty(3, np.float32)
        for i, (f, unit) in enumerate(zip(FEATURES, UNITS)):
            v = x[f]  # a missing feature: KeyError, which the server words
            if isinstance(v, str):
                num, _, u = v.strip().partition(' ')
                base, scale = TO_BASE.get(u.strip() or unit, (None, None))
                if base != unit:
                    raise InputError(f'{f}: unit {u.strip()!r} is not a {unit} measure')
                try:
                    v = float(num) * scale
                except ValueError:
                    raise InputError(f'{f}: {num!r} is not a number') from None
            out[i] = v
        return out

    def network(self, width: int = 16, hidden: int = 32):
        from mlproj.model import MLP, MLPConfig

        X, _ = rows(30)
        return MLP(MLPConfig(3, tuple(X.mean(0).tolist()), tuple(X.std(0).tolist()), hidden, 0.0, 3))


TASK = TinyRows()
