"""Store writes are atomic: a crash mid-write leaves the previous bytes."""

import pytest

from mlproj.store import Store


def test_crash_mid_write_keeps_previous_content(tmp_path, monkeypatch):
    st = Store(str(tmp_path))
    path = st.path('datasets', 'x.json')
    st.write(path, b'old')

    def boom(*a, **k):
        raise OSError('killed')

    monkeypatch.setattr('mlproj.store.os.replace', boom)  # the rename that gives the new bytes their name
    with pytest.raises(OSError):
        st.write(path, b'new content')
    monkeypatch.undo()
    assert st.read(path) == b'old'
    assert [p.name for p in (tmp_path / 'datasets').iterdir()] == ['x.json']  # the temporary file is gone
    st.write(path, b'new')
    assert st.read(path) == b'new'


def _items(n, start=0):
    from mlproj.items import Provenance

    return [
        (
            (start + i).to_bytes(4, 'big') * 16,
            Provenance(f'https://example.test/{start + i}.png', 'application/x-uci-digits-8x8'),
        )
        for i in range(n)
    ]


def test_crash_mid_segment_write_keeps_previous_items(tmp_path, monkeypatch):
    from mlproj.items import get_item, has_item, item_provenance, put_items
    from mlproj.store import sha256

    st = Store(str(tmp_path))
    before = put_items(st, _items(1500))  # one segment
    monkeypatch.setattr('mlproj.store.os.replace', lambda *a, **k: (_ for _ in ()).throw(OSError('killed')))
    with pytest.raises(OSError):
        put_items(st, _items(1500, start=1000))  # 500 new items: the segment never takes its name
    monkeypatch.undo()
    assert not has_item(st, sha256(_items(1, start=2000)[0][0]))
    assert all(has_item(st, d) for d in before) and get_item(st, before[-1]) == _items(1, start=1499)[0][0]
    assert not [p for p in st.fs.find(str(tmp_path)) if '.tmp-' in p]  # no temporary file left behind
    after = put_items(st, _items(1500, start=1000), segment=100)  # run again: the 500 new ones, once
    assert after[:500] == before[1000:] and get_item(st, after[-1]) == _items(1, start=2499)[0][0]
    assert item_provenance(st, after[-1])['source'] == 'https://example.test/2499.png'
    assert len(st.ls(st.path('raw', 'segments'))) == 2


def test_killed_batch_leaves_whole_items_only(tmp_path):
    "SIGKILL while `put_items` writes files of their own: every item present is whole with its provenance; a rerun completes."
    import signal
    import subprocess
    import sys
    import time

    from conftest import wait_until

    from mlproj.items import get_item, has_item, item_provenance, put_items
    from mlproj.store import sha256

    n = 3000
    code = (
        'import sys; sys.path.insert(0, "tests"); from test_store import _items; from mlproj.store import Store; from mlproj.items import put_items; '
        f'put_items(Store({str(tmp_path)!r}), _items({n}), segment=10**9, workers=4)'
    )
    p = subprocess.Popen([sys.executable, '-c', code])
    wait_until(lambda: p.poll() is not None or (tmp_path / 'raw').exists(), 60, 0.02, what='the writer starting')
    time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    st, items = Store(str(tmp_path)), _items(n)
    present = [d for d in map(sha256, (b for b, _ in items)) if has_item(st, d)]
    for d in present:
        assert get_item(st, d) and item_provenance(st, d)['source']  # whole, checked against its sha256
    again = put_items(st, items, segment=10**9)
    assert all(get_item(st, d) == b for d, (b, _) in zip(again, items))
