"""The reports index's view of a run (`index_row`), from the run.json a job's start really writes."""

import json
from dataclasses import asdict

from mlproj.jobs import _start_run, index_row, read_run, write_index
from mlproj.train import TrainResult


def test_index_row_carries_the_parameters_and_figures_a_run_recorded(settings):
    _, run_dir, _, info = _start_run(settings, 'train', dict(max_epochs=5, lr=0.003, dataset_version='abc'), None)
    history = [dict(epoch=e, train_loss=1 / (e + 1), val_loss=1.5 / (e + 1), val_acc=0.9 + e / 100) for e in range(5)]
    result = TrainResult(str(run_dir), 'abc', 0.94, 5, 2.5, None, history)
    (run_dir / 'metrics.json').write_text(json.dumps({k: v for k, v in asdict(result).items() if k != 'run_dir'}))
    row = index_row(read_run(run_dir))
    given = dict(dataset_version='abc', lr=0.003, max_epochs=5)  # and every other effective value the run recorded
    assert {k: row['parameters'][k] for k in given} == given and 'run_dir' not in row['parameters']
    assert row['parameters']['batch_size'] == settings.train.batch_size  # a value settings.ini gave
    figures = dict(val_acc=0.94, epochs=5, seconds=2.5, world_size=1, train_loss=0.2, val_loss=0.3)
    assert {k: row['metrics'][k] for k in figures} == figures
    assert (row['model'], row['task'], row['dataset_version']) == (info['run_id'], 'digits', 'abc')
    assert row['state'] == 'running' and row['code'] == ''.join(info['code_version']['commit'] or '')[:12] + (
        '+dirty' if info['code_version']['dirty'] else ''
    )
    page = write_index(settings).read_text()
    assert '"max_epochs": 5' in page and '"val_loss": -1' in page  # the page's data holds both, and which way is better
