"""What the annotation routes depend on, declared once as `Annotated` aliases, and the mapping of the library's errors to HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from mlproj import annotate as A
from mlproj.settings import Settings

__all__ = [
    'COOKIE',
    'PG_WRITERS',
    'DbDep',
    'PersonDep',
    'SettingsDep',
    'db_call',
    'get_db',
    'get_person',
    'get_settings',
    'http',
    'project',
]

COOKIE = 'mlproj_annotate'
PG_WRITERS = 4  # saves in flight at once in one process on PostgreSQL; more only pass the GIL between threads waiting on the server

_bearer = HTTPBearer(auto_error=False)


async def get_person(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]):
    "The token's owner (Bearer header or login cookie): 401 without a valid one. Async: a cache hit costs no thread."
    token = cred.credentials if cred else request.cookies.get(COOKIE)
    if not token:
        raise HTTPException(
            401, 'log in with your personal link (/login/<token>) or send Authorization: Bearer <token>'
        )
    cache = request.app.state.people
    person = cache.get(token)
    if person is None:
        person = await run_in_threadpool(A.person_for_token, request.app.state.db, token)
        if person is None:
            raise HTTPException(401, 'this login link or token is not valid: ask the project admin for yours')
        cache[token] = person
    return person


async def get_db(request: Request):
    return request.app.state.db


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


PersonDep = Annotated[object, Depends(get_person)]
DbDep = Annotated[object, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def http(fn, *args, **kw):
    "Call into mlproj.annotate, turning its errors into HTTP answers that say what to do."
    try:
        return fn(*args, **kw)
    except A.Forbidden as e:
        raise HTTPException(403, str(e))
    except A.NotFound as e:
        raise HTTPException(404, str(e))
    except A.AnswerConflict as e:
        raise HTTPException(409, str(e))
    except ValueError as e:
        raise HTTPException(422, str(e))


async def db_call(state, fn, *args):
    "`http(fn, *args)`: on SQLite right on the event loop, on PostgreSQL on one of `PG_WRITERS` threads."
    if state.db.sqlite:
        return http(
            fn, *args
        )  # a fraction of a millisecond, one writer at a time anyway: the thread hop cost more than the save
    # waits on the server's round trips and its commit: not on the loop. With 40 threads (Starlette's default) 50 annotators
    # saving back to back got 419 to 451 saves/s at 2.0 ms of CPU a save; with 4, 541 to 599 saves/s at 1.5 to 1.7 ms
    return await state.writers.run(http, fn, *args)


def project(request: Request, person):
    "The person's project, read once per process (a project's name, labels and guide do not change)."
    projects = request.app.state.projects
    if person.project_id not in projects:
        projects[person.project_id] = A.project_for(request.app.state.db, person)
    return projects[person.project_id]
