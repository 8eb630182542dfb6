"""The store on S3: raw items, dataset versions and model bundles round-trip through s3fs against a real
S3-compatible HTTP server (moto's server mode, a separate process on 127.0.0.1), checksums included."""

import pytest

from mlproj.items import Provenance, get_item, item_provenance, put_item
from mlproj.registry import BUNDLE_FILES, Registry
from mlproj.store import IntegrityError, Store
from mlproj.versions import Example, get_version, list_versions, put_version


def test_store_url_reaches_the_s3_server_over_http(s3_store_url, s3_server):
    import fsspec

    st = Store(s3_store_url)
    assert type(st.fs).__name__ == 'S3FileSystem'
    st.write(st.path('hello.txt'), b'hi')
    # a client of its own, configured only by the server's storage options, sees the object
    fs = fsspec.filesystem('s3', skip_instance_cache=True, **s3_server.storage_options)
    assert fs.cat(f'{s3_store_url.removeprefix("s3://")}/hello.txt') == b'hi'


def test_raw_items_round_trip_on_s3_stored_once(s3_store_url):
    st = Store(s3_store_url)
    prov = Provenance(source='http://example.test/a.png', media_type='image/png', headers={'ETag': '"x"'})
    d1 = put_item(st, b'\x89PNG fake bytes', prov)
    d2 = put_item(st, b'\x89PNG fake bytes', Provenance(source='http://example.test/b.png', media_type='image/png'))
    assert d1 == d2
    assert get_item(st, d1) == b'\x89PNG fake bytes'
    assert item_provenance(st, d1)['source'] == 'http://example.test/a.png'  # the first collection is kept
    assert len(st.fs.glob(st.path('raw', '*', '*'))) == 2  # the bytes and their provenance, once
    st.write(st.path('raw', d1[:2], d1), b'tampered')
    with pytest.raises(IntegrityError):
        get_item(st, d1)


def test_dataset_versions_round_trip_on_s3(s3_store_url):
    st = Store(s3_store_url)
    ds = [
        put_item(st, bytes([i]) * 64, Provenance(source='test', media_type='application/x-uci-digits-8x8'))
        for i in range(4)
    ]
    v1 = put_version(st, [Example(d, i % 2, 'train') for i, d in enumerate(ds)], label_source='test')
    v2 = put_version(st, [Example(d, 1, 'train') for d in ds], label_source='test', parent=v1)
    assert sorted(list_versions(st)) == sorted([v1, v2])
    m = get_version(st, v2)
    assert m['parent'] == v1 and [e.label for e in m['examples']] == [1, 1, 1, 1]
    with pytest.raises(KeyError):
        put_version(st, [], label_source='test', parent='0' * 16)


def test_model_bundles_round_trip_on_s3_with_checksums(s3_store_url, tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    for i, f in enumerate(BUNDLE_FILES):
        (run / f).write_bytes(f'fake {f} {i}'.encode() * 100)
    ev = dict(
        model=dict(n=10, accuracy=0.99, macro_f1=0.99, per_class_recall=[0.99] * 10),
        baseline=dict(accuracy=0.1, macro_f1=0.02, answer=0),
        acceptance=dict(passed=True, failures=[]),
        criteria={},
        split='test',
        dataset_version='0123456789abcdef',
    )
    reg = Registry(Store(s3_store_url))
    v = reg.register(run, ev, train_run='t', eval_run='e')
    assert v == 1 and reg.register(run, ev) == 2
    b = Registry(Store(s3_store_url)).load(1)
    assert {f: b.files[f] for f in BUNDLE_FILES} == {f: (run / f).read_bytes() for f in BUNDLE_FILES}
    assert b.manifest['dataset_version'] == '0123456789abcdef'
    reg.store.write(reg._p('1', 'model.onnx'), b'swapped weights')
    with pytest.raises(IntegrityError, match='model.onnx'):
        reg.load(1)
    assert reg.load(2).version == 2


def test_batches_round_trip_on_s3_as_segments_and_as_files(s3_store_url):
    from mlproj.items import _SEG_HEADS, _SEG_WHERE, has_item, put_items

    st = Store(s3_store_url)
    batch = [
        (
            i.to_bytes(2, 'big') * 32,
            Provenance(source=f'http://example.test/{i}.png', media_type='application/x-uci-digits-8x8'),
        )
        for i in range(40)
    ]
    seg = put_items(st, batch[:30], segment=20)  # 30 new items: one segment object, written in one PUT
    assert len(st.fs.glob(st.path('raw', 'segments', '*'))) == 1
    files = put_items(st, batch, segment=20)  # 10 new ones: files of their own, concurrent PUTs
    assert files[:30] == seg and len(st.fs.glob(st.path('raw', '*', '*'))) == 1 + 2 * 10
    fresh = Store(s3_store_url)
    _SEG_WHERE.pop(fresh.url)
    _SEG_HEADS.clear()  # as another process sees it: the segment is found by listing
    assert all(get_item(fresh, d) == b for d, (b, _) in zip(files, batch))  # ranged GETs from the segment, checked
    assert item_provenance(fresh, files[3])['source'] == 'http://example.test/3.png' and has_item(fresh, files[39])
