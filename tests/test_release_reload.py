"""Hot reload over real HTTP: a promotion under load at concurrency 32, a tampered bundle refused, admin auth."""

import asyncio
import logging
import shutil
import time
from pathlib import Path

import httpx
from conftest import make_settings, serving_env, uvicorn_server, wait_until
from fastapi.testclient import TestClient

from deploy.app import create_app
from deploy.auth import Caller
from mlproj.registry import Registry
from mlproj.store import Store

PIXELS = {'pixels': ([0, 0, 5, 13, 9, 1, 0, 0] * 8)}


def _store_with_two_versions(trained, tmp: Path) -> Registry:
    "A copy of the fixture's store with version 2 registered from the same run, production on version 1."
    settings, run_dir, ev = trained
    shutil.copytree(Path(settings.store_url) / 'models', tmp / 'store' / 'models')
    reg = Registry(Store(str(tmp / 'store')))
    reg.register(
        run_dir,
        ev,
        train_run='train-fixture',
        eval_run='eval-fixture',
        code_version={'commit': None, 'dirty': None},
        parameters={'max_epochs': 10},
    )
    reg.set_alias('production', 1, by='test', reason='start on 1', force=True)
    return reg


def _serve(tmp: Path, **env):
    "uvicorn serving production from tmp/store, polling every 0.2 s (a context manager: see conftest.uvicorn_server)."
    return uvicorn_server(
        serving_env(
            tmp / 'store',
            tmp / 'reports',
            **{'MLPROJ_SERVING_MODEL': 'production', 'MLPROJ_SERVING_RELOAD_SECONDS': '0.2', **env},
        )
    )


async def _load(url, stop: asyncio.Event, results: list, clients=32):
    "`clients` loops posting /predict until `stop`: (t, status, field version, header version, latency) each."

    async def one(c, k):
        while not stop.is_set():
            t = time.monotonic()
            try:
                r = await c.post('/predict', json=PIXELS)
                results.append(
                    (
                        t,
                        r.status_code,
                        r.json().get('model_version'),
                        r.headers.get('x-model-version'),
                        time.monotonic() - t,
                        k,
                    )
                )
            except Exception as e:
                results.append((t, repr(e), None, None, time.monotonic() - t, k))

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
        await asyncio.gather(*(one(c, k) for k in range(clients)))


logging.getLogger('httpx').setLevel(logging.WARNING)  # one line per request otherwise


def _p99(xs):
    return sorted(xs)[int(0.99 * (len(xs) - 1))] if xs else float('nan')


def test_promotion_under_load_switches_versions_with_no_failed_request(trained, tmp_path):
    reg = _store_with_two_versions(trained, tmp_path)
    with _serve(tmp_path) as srv:
        url, results, stop = srv.url, [], asyncio.Event()

        async def scenario():
            task = asyncio.create_task(_load(url, stop, results))
            await asyncio.sleep(2)
            t_promote = time.monotonic()
            await asyncio.to_thread(reg.set_alias, 'production', 2, 'test', 'under load')
            deadline = time.monotonic() + 30
            while not any(r[2] == 2 for r in results) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            t_swapped = time.monotonic()
            await asyncio.sleep(1.5)
            stop.set()
            await task
            return t_promote, t_swapped

        t_promote, t_swapped = asyncio.run(scenario())
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:5]
    assert all(str(r[2]) == r[3] for r in results), 'the header and the field disagree'
    versions = [r[2] for r in sorted(results)]
    assert versions[0] == 1 and versions[-1] == 2
    for k in range(32):  # each client's requests are sequential: once one answered from version 2, none from 1
        mine = [r[2] for r in sorted(results) if r[5] == k]
        assert 2 in mine and 1 not in mine[mine.index(2) :], (k, mine)
    before = [r[4] for r in results if r[0] < t_promote]
    during = [r[4] for r in results if t_promote <= r[0] <= t_swapped + 0.5]
    print(
        f'\nrequests {len(results)}, failed {len(failed)}; p99 before {_p99(before) * 1000:.1f} ms ({len(before)}), '
        f'during the swap {_p99(during) * 1000:.1f} ms ({len(during)}); swap {t_swapped - t_promote:.2f} s after the promotion'
    )


def test_tampered_bundle_is_refused_while_the_old_keeps_answering(trained, tmp_path):
    reg = _store_with_two_versions(trained, tmp_path)
    onnx = tmp_path / 'store' / 'models' / '2' / 'model.onnx'
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with _serve(tmp_path) as srv:
        url = srv.url
        reg.set_alias('production', 2, by='test', reason='tampered')

        def refused() -> dict | None:
            m = httpx.get(f'{url}/models').json()
            return m if m['reload_error'] else None

        try:
            m = wait_until(refused, 30, 0.1, what='the reload refused')
        except TimeoutError:
            raise AssertionError(srv.log) from None
        assert 'version 2' in m['reload_error'] and 'sha256' in m['reload_error'] and m['serving'] == 1, m
        r = httpx.post(f'{url}/predict', json=PIXELS)
        assert r.status_code == 200 and r.json()['model_version'] == 1 and r.headers['x-model-version'] == '1'
        assert any('version 2' in l and 'refused' in l for l in srv.lines), srv.log


def test_admin_endpoints_need_a_token_and_reload_on_demand(trained, tmp_path):
    reg = _store_with_two_versions(trained, tmp_path)
    s = make_settings(tmp_path, MLPROJ_SERVING_MODEL='production', MLPROJ_SERVING_RELOAD_SECONDS='0')
    with TestClient(create_app(s)) as c:
        assert c.post('/admin/reload').status_code == 503  # no token configured: off
        c.app.state.tokens = {'s3cret': Caller('ops', 'promote')}  # a role-less token may reload, not promote
        assert c.post('/admin/reload').status_code == 401
        assert c.post('/admin/reload', headers={'Authorization': 'Bearer nope'}).status_code == 403
        auth = {'Authorization': 'Bearer s3cret'}
        reg.set_alias('production', 2, by='test', reason='no polling here')
        assert c.post('/predict', json=PIXELS).json()['model_version'] == 1  # polling is off
        assert c.post('/admin/reload', headers=auth).json() == {'serving': 2, 'reload_error': None}
        assert c.post('/predict', json=PIXELS).headers['x-model-version'] == '2'
        r = c.post('/admin/promote', headers=auth, json={'version': 1, 'reason': 'back'})
        assert r.status_code == 200 and r.json()['serving'] == 1, r.text
        assert reg.history('production')[-1]['by'] == 'ops'
        r = c.post('/admin/promote', headers=auth, json={'version': 9})
        assert r.status_code == 409 and 'version' in r.json()['detail'], r.text


def test_the_default_model_follows_production_not_registration(trained, tmp_path):
    "[serving] model empty: before any release the newest accepted version; once production is set, only a promotion moves it."
    settings, run_dir, ev = trained
    shutil.copytree(Path(settings.store_url) / 'models', tmp_path / 'store' / 'models')
    reg = Registry(Store(str(tmp_path / 'store')))
    passed = dict(ev, acceptance=dict(ev['acceptance'], passed=True, failures=[]))
    register = lambda: reg.register(
        run_dir,
        passed,
        train_run='train-fixture',
        eval_run='eval-fixture',
        code_version={'commit': None, 'dirty': None},
    )
    s = make_settings(tmp_path, MLPROJ_SERVING_MODEL='', MLPROJ_SERVING_RELOAD_SECONDS='0')
    with TestClient(create_app(s)) as c:

        def serving():
            c.app.state.reloader.check(force=True)  # what the poll does when the index changes
            return c.post('/predict', json=PIXELS).json()['model_version']

        assert register() == 2 and serving() == 2  # no release yet: the newest accepted
        reg.set_alias('production', 2, by='test', reason='first release')
        assert register() == 3 and serving() == 2  # registered and accepted, not promoted: nothing served changes
        reg.set_alias('production', 3, by='test', reason='second release')
        assert serving() == 3
