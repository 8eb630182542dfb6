"""Content-Security-Policy of the HTML pages: each may load from and talk to this server only (no CDN, no third party,
so they work offline too), run no script but its own, and be framed by no other site.

A page's own inline scripts are allowed by their sha256, taken from trusted text only, never from the answer being
sent: the scoring page's from its template file, the reports index's from the page `index_html` writes for no runs.
A script that reached a page through data (a name, an error message) then does not run even if escaping failed.
A run's report (an executed notebook as HTML) runs no inline script: nbconvert's only load MathJax, require.js and
mermaid from CDNs, which the report does not need to be read; the reports index shows reports in frames, so they may
be framed by this server."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ['DEMO', 'PagePolicy', 'docs_policy', 'inline_script_hashes', 'policy']

_SCRIPT = re.compile(r'<script(?P<attrs>[^>]*)>(?P<body>.*?)</script>', re.DOTALL | re.IGNORECASE)
_RUNS = ('text/javascript', 'application/javascript', 'module', '')  # types a browser runs: others are data


def policy(
    scripts: str = "'self'",  # script-src sources
    frame_ancestors: str = "'none'",  # who may show the page in a frame
    styles: str = "'self'",  # style-src sources
) -> str:
    "A Content-Security-Policy that keeps a page on this server's origin."
    return (
        f"default-src 'self'; img-src 'self' data: blob:; font-src 'self' data:; style-src {styles}; "
        f"script-src {scripts}; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        f'frame-ancestors {frame_ancestors}'
    )


DEMO = policy()  # the demo page: its script and style are files under /static


def inline_script_hashes(html: str) -> list[str]:
    "CSP sources ('sha256-...') of the inline scripts of `html` a browser would run (not JSON data blocks, not `src=` ones)."
    out = []
    for m in _SCRIPT.finditer(html):
        attrs = m['attrs'].lower()
        kind = re.search(r'\btype\s*=\s*["\']?([^"\'\s>]*)', attrs)
        if re.search(r'\bsrc\s*=', attrs) or (kind and kind[1] not in _RUNS):
            continue
        if '{{' in m['body'] or '{%' in m['body']:
            continue  # a template expression: not trusted text
        out.append("'sha256-" + base64.b64encode(hashlib.sha256(m['body'].encode()).digest()).decode() + "'")
    return out


@functools.cache
def _score() -> str:
    template = Path(__file__).resolve().parent / 'templates' / 'score.html'
    text = template.read_text(encoding='utf-8') if template.is_file() else ''
    return policy(' '.join(["'self'", *inline_script_hashes(text)]), styles="'self' 'unsafe-inline'")


@functools.cache
def _index() -> str:
    from mlproj.jobs import index_html

    return policy(' '.join(["'self'", *inline_script_hashes(index_html([]))]), styles="'self' 'unsafe-inline'")


@functools.cache
def _report() -> str:
    return policy("'self'", frame_ancestors="'self'", styles="'self' 'unsafe-inline'")


def docs_policy(
    page,  # an HTML response FastAPI's docs helpers made (from the app's own settings: trusted text)
):
    "`page` with a policy that runs its own inline script and lets Swagger UI or ReDoc style themselves and search in a worker."
    scripts = ' '.join(["'self'", *inline_script_hashes(page.body.decode())])
    page.headers['Content-Security-Policy'] = (
        policy(scripts, styles="'self' 'unsafe-inline'") + "; worker-src 'self' blob:"
    )
    return page


def _for(path: str):
    "The policy of the page at `path` (a function, so it is made on first use), or None."
    if path == '/score':
        return _score
    if path == '/reports/':
        return _index
    if path.startswith('/reports/runs/'):
        return _report
    return None


class PagePolicy:
    "Pure ASGI middleware: a Content-Security-Policy on the HTML answers of the scoring and reports pages that set none."

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send):
        make = _for(scope['path']) if scope['type'] == 'http' else None
        if make is None:
            return await self.app(scope, receive, send)

        async def with_policy(message):
            if message['type'] == 'http.response.start':
                headers = message.get('headers', [])
                html = any(k == b'content-type' and v.startswith(b'text/html') for k, v in headers)
                if html and not any(k == b'content-security-policy' for k, v in headers):
                    message['headers'] = [*headers, (b'content-security-policy', make().encode())]
            await send(message)

        await self.app(scope, receive, with_policy)
