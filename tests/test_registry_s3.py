"""The registry on S3, through fsspec/s3fs against a real S3 API server (moto in server mode on 127.0.0.1):
conditional puts (If-None-Match: *, If-Match) carry the same guarantees as on a folder."""

import pytest
from test_registry_concurrency import fake_evaluation, fake_run, stress

from mlproj.registry import Registry, RegistryError
from mlproj.store import Conflict, Store


@pytest.fixture
def s3_url(s3_store_url):
    "A fresh prefix on the session's S3 server (tests/conftest.py), with AWS_* set (spawned processes inherit them)."
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a filesystem cached before AWS_ENDPOINT_URL was set would miss the server
    return s3_store_url


def test_conditional_writes_on_s3(s3_url):
    st = Store(s3_url)
    assert st.kind == 's3'
    p = st.path('claims', '1.json')
    st.create(p, b'mine')
    with pytest.raises(Conflict):
        st.create(p, b'yours')  # PUT If-None-Match: *
    data, tag = st.read_tagged(p)
    assert data == b'mine' and tag
    st.swap(p, b'changed', tag)
    with pytest.raises(Conflict):
        st.swap(p, b'stale', tag)  # PUT If-Match on the ETag read
    assert st.read(p) == b'changed' and st.read_tagged(st.path('absent')) == (None, None)
    with pytest.raises(Exception, match='more than the 3 allowed'):
        st.read(p, limit=3)


def test_registry_round_trip_on_s3(s3_url, tmp_path):
    reg = Registry(Store(s3_url))
    for i in (1, 2, 3):
        assert reg.register(fake_run(tmp_path, f'r{i}'), fake_evaluation(i != 2), train_run=f'r{i}') == i
    stamp = reg.stamp()
    assert reg.set_alias('production', 1, by='ana', reason='first') == 1 and reg.stamp() != stamp
    with pytest.raises(RegistryError, match='did not pass acceptance'):
        reg.set_alias('production', 2)
    assert reg.set_alias('production', 3) == 3 and reg.rollback() == 1
    assert [(h['from'], h['to'], h['action']) for h in reg.history()] == [
        (None, 1, 'promote'),
        (1, 3, 'promote'),
        (3, 1, 'rollback'),
    ]
    b = reg.load('production')
    assert b.version == 1 and b.manifest['train_run'] == 'r1'
    assert reg.prune(keep=1, grace=0)['removed'] == [2]  # 1 is production, 3 what it would roll back to
    assert [r['version'] for r in reg.listing()] == [1, 3] and reg.generation() == 7
    assert reg.register(fake_run(tmp_path, 'r4'), fake_evaluation(True), train_run='r4') == 4


def test_concurrent_writers_on_s3(s3_url, tmp_path):
    stress(s3_url, tmp_path, processes=3, ops=30)


@pytest.mark.full
def test_concurrent_writers_on_s3_at_scale(s3_url, tmp_path):
    stress(s3_url, tmp_path, processes=4, ops=150)
