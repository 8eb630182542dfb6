"""Bearer tokens for the job and admin endpoints: off unless configured, 401 without a token, 403 with a wrong one."""
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import make_settings
from deploy.auth import CallerDep, load_tokens


@pytest.fixture
def client(tmp_path):
    app = FastAPI()
    app.state.settings = make_settings(tmp_path)

    @app.post('/admin')
    async def admin(who: CallerDep): return {'who': who}
    return TestClient(app)


def test_endpoints_are_off_when_no_token_is_configured(client, monkeypatch):
    monkeypatch.delenv('MLPROJ_API_TOKENS', raising=False)
    r = client.post('/admin')
    assert r.status_code == 503 and 'MLPROJ_API_TOKENS' in r.json()['detail']


def test_token_is_required_and_checked(client):
    client.app.state.tokens = {'s3cret': 'ann'}
    assert client.post('/admin').status_code == 401
    assert client.post('/admin', headers={'Authorization': 'Bearer wrong'}).status_code == 403
    assert client.post('/admin', headers={'Authorization': 'Bearer s3cret'}).json() == {'who': 'ann'}


def test_tokens_come_from_the_environment_and_the_tokens_file(tmp_path):
    (tmp_path / 'tokens').write_text('# team tokens\nbob  b0b-secret\n\n')
    s = make_settings(tmp_path, MLPROJ_SERVING_TOKENS_FILE=str(tmp_path / 'tokens'))
    assert load_tokens(s, {'MLPROJ_API_TOKENS': 'ann:a1, ci:c2'}) == {'a1': 'ann', 'c2': 'ci', 'b0b-secret': 'bob'}
    with pytest.raises(ValueError, match='not `name:secret`'): load_tokens(s, {'MLPROJ_API_TOKENS': 'lonely'})
