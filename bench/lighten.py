"""The lighter models (mlproj.lighten) beside the model they come from: accuracy, file size, latency, throughput."""

from __future__ import annotations

import os
from pathlib import Path

EPOCHS = int(os.environ.get('BENCH_LIGHTEN_EPOCHS', '30'))


def run(settings, vid: str, run_dir: Path, work: Path, log=print) -> dict:
    "Make the int8, distilled and pruned candidates of `run_dir` and compare them with it."
    from mlproj.lighten import compare, lighten, table_markdown

    folders = lighten(settings, run_dir, work / 'lighten', epochs=EPOCHS)
    rows = compare(settings, {'teacher': run_dir, **folders})
    md = table_markdown(rows)
    log(md)
    return dict(epochs=EPOCHS, rows=[{k: v for k, v in r.items() if k != 'evaluation'} for r in rows], markdown=md)
