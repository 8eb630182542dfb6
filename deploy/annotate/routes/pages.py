"""The pages: login by personal link, the labelling page, the review page. Server-rendered from Jinja templates."""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from mlproj import agreement as G
from mlproj import annotate as A
from mlproj import suggest as S

from ..deps import COOKIE, DbDep, PersonDep, SettingsDep, project

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


def _page(request: Request, template: str, **context) -> HTMLResponse:
    page = templates.TemplateResponse(request, template, context)
    page.headers['Content-Security-Policy'] = CSP
    return page


@router.get('/login/{token}', include_in_schema=False)
def login(token: str, db: DbDep):
    "Set the login cookie from a personal link and go to the person's page."
    person = A.person_for_token(db, token)
    if person is None:
        raise HTTPException(401, 'this login link is not valid: ask the project admin for yours')
    r = RedirectResponse('/review' if person.role == 'reviewer' else '/', status_code=303)
    r.set_cookie(COOKIE, token, httponly=True, samesite='strict', max_age=90 * 86400)
    return r


@router.get('/', response_class=HTMLResponse, include_in_schema=False)
def label_page(request: Request, person: PersonDep):
    "The labelling page (reviewers go to theirs)."
    if person.role == 'reviewer':
        return RedirectResponse('/review', status_code=303)
    p = project(request, person)
    return _page(request, 'label.html', person=person, project=p, guide=guide(p.guide))


@router.get('/review', response_class=HTMLResponse, include_in_schema=False)
def review_page(request: Request, person: PersonDep, db: DbDep, settings: SettingsDep, suggest: str = ''):
    "Items without a majority, and the project's agreement figures; `?suggest=1` asks the production model first."
    if person.role != 'reviewer':
        raise HTTPException(403, 'the review page is for reviewers')
    p = project(request, person)
    if suggest:
        S.suggest(db, settings, p.name)  # lazily: loads the model once asked
    return _page(
        request,
        'review.html',
        person=person,
        project=p,
        guide=guide(p.guide),
        items=A.to_review(db, p.name),
        agreement=G.agreement(db, p.name),
    )
