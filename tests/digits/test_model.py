"""The trained model: it learns, and it reads digits drawn large the way people will send them."""

import numpy as np

from mlproj.data import load_split
from mlproj.digits_preprocess import render_counts
from mlproj.predict import Predictor
from mlproj.store import Store
from mlproj.task import load_task


def test_trained_model_beats_majority_baseline_by_far(trained):
    _, _, ev = trained
    assert ev['model']['accuracy'] > 0.95
    assert ev['baseline']['accuracy'] < 0.15
    assert min(ev['model']['per_class_recall']) > 0.85 and max(ev['baseline']['per_class_recall']) == 1.0


def test_model_reads_digits_drawn_large_in_either_polarity(trained):
    s, train_dir, ev = trained
    X, y = load_split(Store(s.store_url), ev['dataset_version'], 'test')
    p = Predictor(str(train_dir / 'model.onnx'))
    idx = np.random.default_rng(0).choice(len(y), 120, replace=False)
    for dark in (True, False):
        for fmt in ('PNG', 'JPEG'):
            images = [render_counts(X[i], size=200, margin=40, dark_on_light=dark, fmt=fmt) for i in idx]
            acc = (p.predict_raw(images, load_task('digits')).argmax(-1) == y[idx]).mean()
            assert acc > 0.85, (dark, fmt, acc)
