"""The API docs in Debian's Chromium with every other origin blocked: /docs (Swagger UI) and /redoc (ReDoc) render the
API from assets the app serves itself (issue 24: offline, both pages were blank)."""

import re

import httpx
import pytest
from conftest import uvicorn_server
from test_api import server_env

pytestmark = pytest.mark.browser


@pytest.fixture(scope='module')
def docs_server(trained, tmp_path_factory):
    with uvicorn_server(server_env(trained, tmp_path_factory.mktemp('docs'), MLPROJ_MODEL='1')) as srv:
        yield srv


@pytest.fixture
def offline_page(docs_server, browser):
    """A page that may reach the server only: what it asks of any other origin is refused and listed in `page.elsewhere`,
    what its Content-Security-Policy refused is in `page.refused`, and its script errors in `page.errors`."""
    page = browser.new_page()
    page.elsewhere, page.refused, page.errors = [], [], []

    def refuse(route):
        page.elsewhere.append(route.request.url)
        route.abort()

    page.route(re.compile('^(?!' + re.escape(docs_server.url) + '/)'), refuse)
    page.on('console', lambda m: page.refused.append(m.text) if 'Content Security Policy' in m.text else None)
    page.on('pageerror', lambda e: page.errors.append(str(e)))
    yield page
    page.close()


def test_the_docs_pages_load_nothing_from_another_origin(docs_server):
    for path in ('/docs', '/redoc'):
        html = httpx.get(docs_server.url + path).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith('/') for u in urls), (path, urls)
        for u in urls:
            assert httpx.get(docs_server.url + u).status_code == 200, u


def test_swagger_ui_renders_every_operation_offline(docs_server, offline_page):
    page = offline_page
    page.goto(f'{docs_server.url}/docs')
    page.wait_for_selector('.opblock-summary-path', timeout=60_000)
    shown = {
        (m.strip(), p.strip())
        for m, p in zip(
            page.locator('.opblock-summary-method').all_inner_texts(),
            page.locator('.opblock-summary-path').all_inner_texts(),
        )
    }
    spec = httpx.get(f'{docs_server.url}/openapi.json').json()['paths']
    assert shown == {(m.upper(), p) for p, ops in spec.items() for m in ops}
    assert page.elsewhere == [] and page.refused == [] and page.errors == []


def test_redoc_renders_the_api_offline(docs_server, offline_page):
    page = offline_page
    page.goto(f'{docs_server.url}/redoc')
    page.wait_for_selector('h1', timeout=60_000)  # ReDoc's title, rendered from the spec
    assert page.locator('h1').first.inner_text().startswith('mlproj')
    page.wait_for_selector('[data-section-id="operation/predict_predict_post"]', state='attached', timeout=60_000)
    spec = httpx.get(f'{docs_server.url}/openapi.json').json()['paths']
    ids = page.eval_on_selector_all('[data-section-id^="operation/"]', 'els => els.map(e => e.dataset.sectionId)')
    assert len(set(ids)) == sum(len(ops) for ops in spec.values())
    assert page.elsewhere == [] and page.errors == []
    assert all('cdn.redoc.ly' in m for m in page.refused), page.refused  # Redocly's logo only, which it always asks for
