"""Store writes are atomic: a crash mid-write leaves the previous bytes."""
import pytest

from mlproj.store import Store


def test_crash_mid_write_keeps_previous_content(tmp_path, monkeypatch):
    st = Store(str(tmp_path))
    path = st.path('datasets', 'x.json')
    st.write(path, b'old')

    def boom(*a, **k): raise OSError('killed')
    monkeypatch.setattr('mlproj.store.os.replace', boom)  # the rename that gives the new bytes their name
    with pytest.raises(OSError):
        st.write(path, b'new content')
    monkeypatch.undo()
    assert st.read(path) == b'old'
    assert [p.name for p in (tmp_path / 'datasets').iterdir()] == ['x.json']  # the temporary file is gone
    st.write(path, b'new')
    assert st.read(path) == b'new'
