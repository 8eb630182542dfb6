"""Bearer tokens for the endpoints that change things (jobs, admin).

Tokens come from `MLPROJ_API_TOKENS` (comma-separated `name:secret` pairs) and from the file that settings.ini
`[serving] tokens_file` names (one `name secret` pair a line, `#` comments; keep it outside git). With no token
configured those endpoints answer 503 saying how to set one: they are never open by default."""
from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Annotated, Mapping

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlproj.settings import Settings

__all__ = ['load_tokens', 'require_token', 'CallerDep']

HOW = ('no API token is configured, so this endpoint is off: set MLPROJ_API_TOKENS=name:secret '
       '(or list `name secret` lines in the file [serving] tokens_file names) and restart the server')


def load_tokens(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    "secret -> caller name, from MLPROJ_API_TOKENS and [serving] tokens_file."
    env = os.environ if env is None else env
    pairs = [p.strip() for p in env.get('MLPROJ_API_TOKENS', '').split(',') if p.strip()]
    path = settings.serving.tokens_file and Path(settings.resolve(settings.serving.tokens_file))
    if path and path.is_file():
        pairs += [':'.join(l.split(None, 1)) for l in path.read_text().splitlines() if l.strip() and not l.lstrip().startswith('#')]
    tokens = {}
    for p in pairs:
        name, sep, secret = p.partition(':')
        if not sep or not secret.strip(): raise ValueError(f'API token entry {name!r} is not `name:secret`')
        tokens[secret.strip()] = name.strip()
    return tokens


_bearer = HTTPBearer(auto_error=False, description='a token from MLPROJ_API_TOKENS or [serving] tokens_file')


async def require_token(request: Request,
                        cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    "The caller's name: 503 when no token is configured, 401 without a bearer token, 403 with a wrong one."
    tokens = getattr(request.app.state, 'tokens', None)
    if tokens is None: tokens = request.app.state.tokens = load_tokens(request.app.state.settings)
    if not tokens: raise HTTPException(503, HOW)
    if cred is None: raise HTTPException(401, 'this endpoint needs `Authorization: Bearer <token>`',
                                         headers={'WWW-Authenticate': 'Bearer'})
    for secret, name in tokens.items():
        if hmac.compare_digest(secret.encode(), cred.credentials.encode()): return name
    raise HTTPException(403, 'this token is not valid for this server')


CallerDep = Annotated[str, Depends(require_token)]
