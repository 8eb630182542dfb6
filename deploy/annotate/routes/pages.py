"""The pages: login by personal link, the labelling page, the review page. Server-rendered from Jinja templates."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates

from mlproj import agreement as G
from mlproj import annotate as A
from mlproj import suggest as S

from ..deps import COOKIE, DbDep, SettingsDep, get_person, project

router = APIRouter(tags=['pages'])

HERE = Path(__file__).resolve().parents[1]
STATIC = HERE / 'static'
templates = Jinja2Templates(directory=HERE / 'templates')

# the pages load and call this server only (no CDN: they work offline), and run no inline script: a guide that got
# script past the Markdown renderer would still not run it. Images may come from https: (a guide's examples)
CSP = (
    "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@functools.cache
def _markdown():
    import mistune

    return mistune.create_markdown(escape=True)  # raw HTML shown as text; javascript:/data: links become #harmful-link


def guide(text: str) -> str:
    "The project's guide as HTML: Markdown only, no HTML of its own (so no script, no event handler)."
    return _markdown()(text or '')


def _page(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    page = templates.TemplateResponse(request, template, context, status_code=status_code)
    page.headers['Content-Security-Policy'] = CSP
    return page


def _browser(request: Request) -> bool:
    "A person's browser asking for a page (Accept: text/html): it is shown pages; a script gets JSON."
    return 'text/html' in request.headers.get('accept', '')


_bearer = HTTPBearer(auto_error=False)


async def page_person(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]):
    "The token's owner; None for a browser without a valid token (it is shown the login page); a script gets the 401."
    try:
        return await get_person(request, cred)
    except HTTPException as e:
        if e.status_code == 401 and _browser(request):
            return None
        raise


PagePersonDep = Annotated[object, Depends(page_person)]

NOT_VALID = "This link is not valid (any more): ask the project's admin for your personal link."


def _login_page(request: Request, message: str = '') -> HTMLResponse:
    "The login page (401): how to get in, with `message` saying what went wrong; a stale login cookie is dropped."
    page = _page(request, 'login.html', 401, message=message)
    if request.cookies.get(COOKIE):
        page.delete_cookie(COOKIE, httponly=True, samesite='strict')
    return page


def _logged_in(person, token: str) -> RedirectResponse:
    r = RedirectResponse('/review' if person.role == 'reviewer' else '/', status_code=303)
    r.set_cookie(COOKIE, token, httponly=True, samesite='strict', max_age=90 * 86400)
    return r


@router.get('/login/{token}', include_in_schema=False)
def login(token: str, request: Request, db: DbDep):
    "Set the login cookie from a personal link and go to the person's page."
    person = A.person_for_token(db, token)
    if person is None:
        if _browser(request):
            return _login_page(request, NOT_VALID)
        raise HTTPException(401, 'this login link is not valid: ask the project admin for yours')
    return _logged_in(person, token)


def token_of(
    link: str,  # a personal link as pasted (`http://host/login/<token>`), or the token alone
) -> str:
    "The token in a pasted personal link."
    link = link.strip()
    if '/login/' in link:
        link = link.rsplit('/login/', 1)[1]
    return link.split('?')[0].split('#')[0].strip('/ ')


@router.post('/login', include_in_schema=False)
def login_form(request: Request, db: DbDep, link: Annotated[str, Form(max_length=2000)] = ''):
    "The login page's form: a pasted personal link (or its token) logs in as the link would."
    token = token_of(link)
    person = A.person_for_token(db, token) if token else None
    if person is None:
        return _login_page(request, NOT_VALID if token else 'Paste your personal link first.')
    return _logged_in(person, token)


def _shown(settings) -> dict:
    "How the pages show the task's items: `show_as` ('image' or 'row') and, for rows, the features with their units."
    from mlproj.task import task_of

    task = task_of(settings)
    units = (task.input.units or ('',) * len(task.input.features)) if task.show_as == 'row' else ()
    features = list(zip(task.input.features, units)) if task.show_as == 'row' else []
    return dict(show_as=task.show_as, task=task.name, features=features)


# up to this many labels, digit keys answer (0-9); beyond, a searchable list (type to filter, Enter)
KEYED = 10


@router.get('/', response_class=HTMLResponse, include_in_schema=False)
def label_page(request: Request, person: PagePersonDep, settings: SettingsDep):
    "The labelling page (reviewers go to theirs); a browser without a valid login gets the login page."
    if person is None:
        return _login_page(request, NOT_VALID if _had_token(request) else '')
    if person.role == 'reviewer':
        return RedirectResponse('/review', status_code=303)
    p = project(request, person)
    return _page(
        request,
        'label.html',
        person=person,
        project=p,
        guide=guide(p.guide),
        keyed=len(p.labels) <= KEYED,
        **_shown(settings),
    )


def _had_token(request: Request) -> bool:
    return bool(request.cookies.get(COOKIE) or request.headers.get('authorization'))


@router.get('/review', response_class=HTMLResponse, include_in_schema=False)
def review_page(request: Request, person: PagePersonDep, db: DbDep, settings: SettingsDep, suggest: str = ''):
    "Items without a majority, and the project's agreement figures; `?suggest=1` asks the production model first."
    if person is None:
        return _login_page(request, NOT_VALID if _had_token(request) else '')
    p = project(request, person)
    if person.role != 'reviewer':
        if _browser(request):
            return _page(
                request,
                'notice.html',
                403,
                person=person,
                project=p,
                heading='This page is for reviewers',
                message=f'The review page is for the reviewers of {p.name}; you label its items on your own page.',
                link='/',
                link_text='Go to your labelling page',
            )
        raise HTTPException(403, 'the review page is for reviewers')
    if suggest:
        S.suggest(db, settings, p.name)  # lazily: loads the model once asked
    shown, items = _shown(settings), A.to_review(db, p.name)
    if shown['show_as'] == 'row':  # rows are drawn in the page, as a table each
        _rows(db, person, settings, items)
    return _page(
        request,
        'review.html',
        person=person,
        project=p,
        guide=guide(p.guide),
        items=items,
        agreement=G.agreement(db, p.name),
        keyed=len(p.labels) <= KEYED,
        **shown,
    )


def _rows(db, person, settings, items: list[dict]):
    "Each item's features (name, value, unit) as `row`; an item the task cannot read gets the reason as `unreadable`."
    from mlproj.items import get_item
    from mlproj.store import Store
    from mlproj.task import task_of

    from .label import item_row

    task, store = task_of(settings), Store(settings.store_url)
    for it in items:
        sha, media = A.item_for(db, person, it['item_id'])
        try:
            it['row'] = item_row(task, get_item(store, sha), media)
        except ValueError as e:
            it['unreadable'] = str(e)
