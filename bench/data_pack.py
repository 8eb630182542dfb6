"""Build and load a synthetic dataset version of 100,000 items; print items/s, packed loading against item by item.

    python bench/data_pack.py [--items 100000] [--store DIR_OR_URL] [--per-item N] [--files N]

Items are random 8x8 images of counts (64 bytes each, the benchmark's own media type) stored as raw items with
provenance (`put_items`: a batch this large goes into segment files), then a manifest (split by item hash) and its
pack; side by side, the first `--files` items are stored again in a fresh store as files of their own (two files
per item, as `put_item` and batches under `put_items`' `segment` threshold store them). Loading reads every split into the
model's arrays: from the pack, then item by item (two files per item: bytes and provenance), side by side in this
run. Goals (issue 7): build < 60 s, load < 2 s on the 2-core machines.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlproj.data import hash_split, load_splits, pack_version, read_pack
from mlproj.digits import UCI_MEDIA_TYPE
from mlproj.items import Provenance, put_items
from mlproj.store import Store, utc_now
from mlproj.versions import Example, put_version


def build(st: Store, n: int, seed: int = 0, workers: int = 8, segment: int = 1000) -> tuple[str, dict]:
    "Store n synthetic items, their version and its pack; return the version id and the seconds of each step."
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 17, (n, 64), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    t = {}
    t0 = time.perf_counter()
    now = utc_now()
    items = [img.tobytes() for img in imgs]
    digests = put_items(
        st,
        [
            (b, Provenance(f'https://synthetic.example/{i}.png', UCI_MEDIA_TYPE, collected=now))
            for i, b in enumerate(items)
        ],
        workers=workers,
        segment=segment,
    )
    known = {d: (b, UCI_MEDIA_TYPE) for d, b in zip(digests, items)}
    examples = [Example(d, int(y), hash_split(d, 0.1, 0.2)) for d, y in zip(digests, labels)]
    t['items'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vid = put_version(
        st,
        examples,
        label_source='synthetic',
        description=f'{n} synthetic items (bench/data_pack.py)',
        split=dict(method='sha256', seed=0, val_fraction=0.1, test_fraction=0.2),
    )
    t['manifest'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pack_version(st, vid, known)
    t['pack'] = time.perf_counter() - t0
    return vid, t


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--items', type=int, default=100_000)
    ap.add_argument('--store', help='a folder or fsspec URL (default: a fresh temporary folder)')
    ap.add_argument('--workers', type=int, default=8, help='threads storing items (default 8)')
    ap.add_argument('--per-item', type=int, default=None, help='load item by item only this many items (default: all)')
    ap.add_argument(
        '--files',
        type=int,
        default=10_000,
        help='items stored as files of their own, side by side (default 10,000; 0: none)',
    )
    a = ap.parse_args()
    tmp = None if a.store else tempfile.TemporaryDirectory(prefix='bench-data-')
    st = Store(a.store or tmp.name)
    n = a.items
    print(f'store: {st.url}  items: {n:,}  threads storing them: {a.workers}')
    vid, t = build(st, n, workers=a.workers)
    total = sum(t.values())
    print(
        f'build: {total:.1f} s ({n / total:,.0f} items/s): items {t["items"]:.1f} s, manifest {t["manifest"]:.2f} s, '
        f'pack {t["pack"]:.2f} s ({st.fs.size(st.path("datasets", vid + ".pack")) / 1e6:.1f} MB)  goal < 60 s: '
        f'{"met" if total < 60 else "NOT met"}'
    )
    packed, tp = timed(lambda: load_splits(st, vid, packed=True))
    _, tv = timed(lambda: read_pack(st, vid))
    print(
        f"load from the pack: {tp:.2f} s ({n / tp:,.0f} items/s; of which reading and checking every item's sha256 "
        f'{tv:.2f} s)  goal < 2 s: {"met" if tp < 2 else "NOT met"}'
    )
    m = a.per_item or n
    sub = vid
    if m < n:  # a child version of the first m items, loaded item by item
        from mlproj.versions import get_version

        sub = put_version(st, get_version(st, vid)['examples'][:m], label_source='synthetic', parent=vid)
    per_item, ti = timed(lambda: load_splits(st, sub, packed=False))
    print(f'load item by item: {ti:.2f} s for {m:,} items ({m / ti:,.0f} items/s)')
    if m == n:
        assert all(
            np.array_equal(packed[s][0], per_item[s][0]) and np.array_equal(packed[s][1], per_item[s][1])
            for s in packed
        )
    print(f'ratio packed / item by item: {(n / tp) / (m / ti):,.1f}x items/s')
    if a.files:
        with tempfile.TemporaryDirectory(prefix='bench-data-files-') as d:
            _, tf = build(Store(d), a.files, workers=a.workers, segment=a.files + 1)
        print(
            f'the first {a.files:,} items as files of their own: {tf["items"]:.1f} s ({a.files / tf["items"]:,.0f} items/s) against '
            f'segments {n / t["items"]:,.0f} items/s: segments {(n / t["items"]) / (a.files / tf["items"]):,.1f}x faster'
        )
    if tmp:
        tmp.cleanup()


if __name__ == '__main__':
    main()
