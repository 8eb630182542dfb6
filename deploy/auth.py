"""Bearer tokens for the endpoints that change things (jobs, admin), each token with a role.

Tokens come from `MLPROJ_API_TOKENS` (comma-separated `name:secret` or `name:secret:role` entries) and from the file that
settings.ini `[serving] tokens_file` names (one `name secret` or `name secret role` line each, `#` comments; keep it
outside git). The roles, each allowing what the ones before it do: `read` (look at jobs), `submit` (queue jobs),
`operate` (cancel jobs, reload the served model), `promote` (point an alias such as production at a version). A token
given without a role is an `operate` token: every configuration written before roles existed keeps working, except
promotion, which now needs a token that says `promote`. With no token configured those endpoints answer 503 saying how
to set one: they are never open by default."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlproj.settings import Settings

__all__ = [
    'DEFAULT_ROLE',
    'ROLES',
    'Caller',
    'CallerDep',
    'OperateDep',
    'PromoteDep',
    'SubmitDep',
    'load_tokens',
    'needs',
    'require_token',
]

HOW = (
    'no API token is configured, so this endpoint is off: set MLPROJ_API_TOKENS=name:secret '
    '(or list `name secret` lines in the file [serving] tokens_file names) and restart the server'
)


ROLES = ('read', 'submit', 'operate', 'promote')  # each allows what the ones before it do
DEFAULT_ROLE = 'operate'  # a token configured without a role: all that tokens could do before roles, except promote


class Caller(str):
    "The caller's name (a str, as before roles), with the `role` of its token."

    role: str

    def __new__(cls, name: str, role: str = DEFAULT_ROLE):
        self = super().__new__(cls, name)
        self.role = role
        return self


def _entry(name: str, secret: str, role: str, where: str) -> tuple[str, Caller]:
    name, secret, role = name.strip(), secret.strip(), role.strip() or DEFAULT_ROLE
    if not name or not secret:
        raise ValueError(f'API token entry {name!r} in {where} is not `name:secret` (or `name:secret:role`)')
    if role not in ROLES:
        raise ValueError(f'API token {name!r} in {where}: unknown role {role!r}; the roles are {", ".join(ROLES)}')
    return secret, Caller(name, role)


def load_tokens(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, Caller]:
    "secret -> caller (its name and role), from MLPROJ_API_TOKENS and [serving] tokens_file."
    env = os.environ if env is None else env
    entries = []
    for p in (p.strip() for p in env.get('MLPROJ_API_TOKENS', '').split(',')):
        if not p:
            continue
        name, _, rest = p.partition(':')
        secret, _, role = rest.rpartition(':') if rest.rpartition(':')[2].strip() in ROLES else (rest, '', '')
        entries.append(_entry(name, secret, role, 'MLPROJ_API_TOKENS'))
    path = settings.serving.tokens_file and Path(settings.resolve(settings.serving.tokens_file))
    if path and path.is_file():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith('#'):
                continue
            parts = line.split()
            if len(parts) > 3:
                raise ValueError(f'{path} line {n}: more than `name secret role`')
            entries.append(_entry(*(parts + ['', ''])[:3], f'{path} line {n}'))
    return dict(entries)


_bearer = HTTPBearer(auto_error=False, description='a token from MLPROJ_API_TOKENS or [serving] tokens_file')


async def require_token(
    request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    "The caller (its name, and its token's role): 503 when no token is configured, 401 without a bearer token, 403 with a wrong one."
    tokens = getattr(request.app.state, 'tokens', None)
    if tokens is None:
        tokens = request.app.state.tokens = load_tokens(request.app.state.settings)
    if not tokens:
        raise HTTPException(503, HOW)
    if cred is None:
        raise HTTPException(
            401, 'this endpoint needs `Authorization: Bearer <token>`', headers={'WWW-Authenticate': 'Bearer'}
        )
    for secret, caller in tokens.items():
        if hmac.compare_digest(secret.encode(), cred.credentials.encode()):
            return caller if isinstance(caller, Caller) else Caller(caller)  # a bare name: the default role
    raise HTTPException(403, 'this token is not valid for this server')


def needs(role: str):
    "A dependency: the caller, when its token's role is `role` or one after it in ROLES; else 403 saying how to give it."
    assert role in ROLES, role

    async def check(caller: Annotated[Caller, Depends(require_token)]) -> Caller:
        if ROLES.index(caller.role) < ROLES.index(role):
            raise HTTPException(
                403,
                f'the token of {str(caller)!r} has the role {caller.role!r}; this needs {role!r} '
                f'(roles: {", ".join(ROLES)}, each allowing the ones before it): give the token that '
                f'role in MLPROJ_API_TOKENS (name:secret:{role}) or [serving] tokens_file (name secret {role})',
            )
        return caller

    check.__name__ = f'needs_{role}'
    return check


CallerDep = Annotated[Caller, Depends(require_token)]  # any valid token: the read role
SubmitDep = Annotated[Caller, Depends(needs('submit'))]
OperateDep = Annotated[Caller, Depends(needs('operate'))]
PromoteDep = Annotated[Caller, Depends(needs('promote'))]
