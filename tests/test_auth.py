"""Bearer tokens for the job and admin endpoints: off unless configured, 401 without a token, 403 with a wrong one, and
each token's role (read, submit, operate, promote) bounding what it may do."""

import pytest
from conftest import make_settings
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from deploy.auth import DEFAULT_ROLE, ROLES, Caller, CallerDep, load_tokens, needs
from mlproj.registry import Registry
from mlproj.store import Store


@pytest.fixture
def client(tmp_path):
    app = FastAPI()
    app.state.settings = make_settings(tmp_path)

    @app.post('/admin')
    async def admin(who: CallerDep):
        return {'who': who, 'role': who.role}

    for role in ROLES:
        app.post(f'/{role}')(lambda who=Depends(needs(role)): {'who': who})  # noqa: B008 (FastAPI's dependency idiom)
    return TestClient(app)


def test_endpoints_are_off_when_no_token_is_configured(client, monkeypatch):
    monkeypatch.delenv('MLPROJ_API_TOKENS', raising=False)
    r = client.post('/admin')
    assert r.status_code == 503 and 'MLPROJ_API_TOKENS' in r.json()['detail']


def test_token_is_required_and_checked(client):
    client.app.state.tokens = {'s3cret': 'ann'}
    assert client.post('/admin').status_code == 401
    assert client.post('/admin', headers={'Authorization': 'Bearer wrong'}).status_code == 403
    assert client.post('/admin', headers={'Authorization': 'Bearer s3cret'}).json() == {
        'who': 'ann',
        'role': DEFAULT_ROLE,
    }


def test_tokens_come_from_the_environment_and_the_tokens_file(tmp_path):
    (tmp_path / 'tokens').write_text('# team tokens\nbob  b0b-secret\n\nrel r3l promote\n')
    s = make_settings(tmp_path, MLPROJ_SERVING_TOKENS_FILE=str(tmp_path / 'tokens'))
    tokens = load_tokens(s, {'MLPROJ_API_TOKENS': 'ann:a1, ci:c2:submit, odd:with:colon'})
    assert tokens == {'a1': 'ann', 'c2': 'ci', 'with:colon': 'odd', 'b0b-secret': 'bob', 'r3l': 'rel'}
    assert {str(c): c.role for c in tokens.values()} == {
        'ann': 'operate',
        'ci': 'submit',
        'odd': 'operate',
        'bob': 'operate',
        'rel': 'promote',
    }
    with pytest.raises(ValueError, match='not `name:secret`'):
        load_tokens(s, {'MLPROJ_API_TOKENS': 'lonely'})
    (tmp_path / 'tokens').write_text('bob b0b-secret admin\n')
    with pytest.raises(ValueError, match="line 1: unknown role 'admin'; the roles are read, submit, operate, promote"):
        load_tokens(s, {})


def test_each_role_allows_what_the_ones_before_it_do(client):
    client.app.state.tokens = {f'{r}-secret': Caller(r, r) for r in ROLES}
    allowed = {
        (have, need): client.post(f'/{need}', headers={'Authorization': f'Bearer {have}-secret'}).status_code
        for have in ROLES
        for need in ROLES
    }
    assert allowed == {(h, n): 200 if ROLES.index(h) >= ROLES.index(n) else 403 for h in ROLES for n in ROLES}
    r = client.post('/promote', headers={'Authorization': 'Bearer read-secret'})
    assert (
        "has the role 'read'; this needs 'promote'" in r.json()['detail']
        and 'name:secret:promote' in r.json()['detail']
    )


def test_only_a_promote_token_can_promote_production(tmp_path, monkeypatch):
    "The real /admin/promote over a real (empty) registry: read and role-less (operate) tokens are refused before it is touched."
    from deploy.routes import admin

    monkeypatch.setenv('MLPROJ_API_TOKENS', 'viewer:v1:read, legacy:l2, release:r3:promote')
    app = FastAPI()
    app.include_router(admin.router)
    app.state.settings = make_settings(tmp_path)
    app.state.registry = Registry(Store(str(tmp_path / 'store')))
    with TestClient(app) as c:
        promote = lambda secret: c.post(
            '/admin/promote', json={'version': 9, 'reason': 'try'}, headers={'Authorization': f'Bearer {secret}'}
        )
        for secret, role in (('v1', 'read'), ('l2', 'operate')):
            r = promote(secret)
            assert r.status_code == 403 and f"has the role '{role}'; this needs 'promote'" in r.json()['detail'], r.text
        r = promote('r3')  # let through: the registry itself refuses (nothing is registered in it)
        assert r.status_code == 409 and 'no model is registered' in r.json()['detail'], r.text
