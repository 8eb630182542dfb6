"""The demo page in Debian's Chromium, served by uvicorn with a trained model: digits 0-9 drawn with the mouse the way a
person draws them, read by the page; a correction kept with its provenance; a finger on a phone-sized screen; nothing
loaded from another origin."""

import math
import shutil
import time
from pathlib import Path

import pytest
from conftest import uvicorn_server
from test_api import server_env

from mlproj.items import item_provenance
from mlproj.servicelike import list_corrections
from mlproj.store import Store

pytestmark = pytest.mark.browser


def arc(cx, cy, rx, ry, start, end, n=None):
    "Points along an ellipse in the unit box (x right, y down), from angle `start` to `end` in degrees (counter-clockwise on screen when end > start)."
    n = n or max(8, int(abs(end - start) / 10))
    return [
        (cx + rx * math.cos(math.radians(a)), cy - ry * math.sin(math.radians(a)))
        for a in (start + (end - start) * i / n for i in range(n + 1))
    ]


# each digit as the strokes a person makes with a mouse (designed here, not the service-like generator's shapes)
STROKES = {
    0: [arc(0.5, 0.5, 0.3, 0.45, 100, 470)],
    1: [[(0.36, 0.22), (0.54, 0.06), (0.54, 0.94)]],
    2: [arc(0.5, 0.3, 0.27, 0.22, 160, -30) + [(0.22, 0.9), (0.8, 0.9)]],
    3: [arc(0.48, 0.28, 0.25, 0.2, 150, -90) + arc(0.48, 0.7, 0.28, 0.22, 90, -150)],
    4: [[(0.58, 0.06), (0.2, 0.64), (0.82, 0.64)], [(0.64, 0.32), (0.64, 0.96)]],
    5: [[(0.31, 0.1), (0.28, 0.46)] + arc(0.5, 0.68, 0.28, 0.24, 130, -150), [(0.31, 0.1), (0.76, 0.1)]],
    6: [arc(0.74, 0.62, 0.44, 0.56, 95, 180) + arc(0.5, 0.7, 0.2, 0.22, 180, 530)],
    7: [[(0.2, 0.1), (0.8, 0.1), (0.42, 0.94)]],
    8: [arc(0.5, 0.27, 0.2, 0.2, 0, 360), arc(0.5, 0.7, 0.25, 0.23, 0, 360)],
    9: [arc(0.48, 0.3, 0.24, 0.22, 10, 370) + [(0.71, 0.9)]],
}

READ = (
    "document.getElementById('answer').dataset.version === document.getElementById('pad').dataset.version "
    "&& document.getElementById('pad').dataset.version !== '0'"
)


def wait_for(page, js, timeout=30.0):
    "Poll `js` until it is true: Playwright's wait_for_function compiles its string in the page, which the page's CSP forbids."
    deadline = time.monotonic() + timeout
    while not page.evaluate(js):
        assert time.monotonic() < deadline, f'still false after {timeout} s: {js}'
        page.wait_for_timeout(50)


def dense(points, step=0.02):
    "The points with more between them, as a hand moving steadily gives the browser many pointer events."
    out = [points[0]]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        k = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * i / k, y0 + (y1 - y0) * i / k) for i in range(1, k + 1)]
    return out


def to_screen(box, u, v, slant=0.0):
    "A point of the unit box, in page pixels inside the canvas (the digit about 80% of its height, centred, leaning by `slant`)."
    u += slant * (0.5 - v)
    return box['x'] + (0.2 + 0.6 * u) * box['width'], box['y'] + (0.1 + 0.8 * v) * box['height']


def draw_with_mouse(page, digit):
    "Draw `digit` as a hand does: a little slanted, with a slight tremor (seeded: the same drawing every run)."
    import random

    rng = random.Random(digit)
    box, slant = page.locator('#pad').bounding_box(), rng.uniform(-0.15, 0.15)
    for stroke in STROKES[digit]:
        pts = [to_screen(box, u + rng.gauss(0, 0.006), v + rng.gauss(0, 0.006), slant) for u, v in dense(stroke)]
        page.mouse.move(*pts[0])
        page.mouse.down()
        for p in pts[1:]:
            page.mouse.move(*p)
        page.mouse.up()


def reading(page) -> int | None:
    wait_for(page, READ)
    text = page.inner_text('#answer').strip()
    return int(text) if text.isdigit() else None


@pytest.fixture(scope='module')
def served(trained, tmp_path_factory):
    "(base URL, store): uvicorn serving the fixture's model from a store of this module's own (corrections land there)."
    tmp = tmp_path_factory.mktemp('demo')
    shutil.copytree(Path(trained[0].store_url) / 'models', tmp / 'store' / 'models')
    env = server_env(trained, tmp, MLPROJ_PATHS_STORE=str(tmp / 'store'), MLPROJ_MODEL='1')
    with uvicorn_server(env) as srv:
        yield srv.url, Store(str(tmp / 'store'))


def test_digits_drawn_with_the_mouse_are_read_and_a_correction_is_kept(browser, served):
    url, store = served
    page = browser.new_page(viewport={'width': 1000, 'height': 800})
    requested = []
    page.on('request', lambda r: requested.append(r.url))
    page.goto(url + '/')
    page.wait_for_selector('#pad')
    answers = {}
    for digit in range(10):
        page.click('#clear')
        draw_with_mouse(page, digit)
        answers[digit] = reading(page)
        bars = page.eval_on_selector_all('#bars .pct', 'els => els.map(e => parseInt(e.textContent))')
        assert len(bars) == 10 and 95 <= sum(bars) <= 105, bars  # a bar per class, the probabilities
    right = [d for d, a in answers.items() if a == d]
    wrong = {d: a for d, a in answers.items() if a != d}
    print(f'\ndemo page: {len(right)} of 10 digits drawn with the mouse read right; wrong (drawn: read): {wrong}')
    assert len(right) >= 8, f'only {len(right)} of 10 read right; wrong (drawn: read): {wrong}'

    # "it was a _": the last drawing (a 9) kept with its label and provenance
    page.click('#correct button[data-label="9"]')
    wait_for(page, "!!document.getElementById('status').dataset.saved")
    sha = page.get_attribute('#status', 'data-saved')
    assert [(c['sha256'], c['label']) for c in list_corrections(store)] == [(sha, 9)]
    prov = item_provenance(store, sha)
    h = prov['headers']
    assert prov['source'] == 'demo correction' and prov['media_type'] == 'image/png'
    assert (
        'Chrome' in h['user_agent'] and h['label'] == 9 and h['model_version'] == 1 and h['model_answer'] == answers[9]
    )

    # every asset and call same-origin: nothing from a CDN or any other server
    refs = page.eval_on_selector_all('[src], [href]', 'els => els.map(e => e.src || e.href)')
    outside = [u for u in requested + refs if not (u.startswith((url + '/', 'data:')))]
    assert not outside, outside
    assert any(u.endswith('/predict') for u in requested) and any(u.endswith('/static/demo.js') for u in requested)
    page.close()


def test_a_finger_draws_on_a_phone_sized_screen(browser, served):
    url, _ = served
    context = browser.new_context(
        viewport={'width': 390, 'height': 844}, is_mobile=True, has_touch=True, device_scale_factor=3
    )
    page = context.new_page()
    page.goto(url + '/')
    assert page.evaluate('() => document.documentElement.scrollWidth') <= 390  # no sideways scrolling
    assert page.evaluate(  # the look every page shares, and a way to the others
        "() => [...document.styleSheets].some(s => s.href && s.href.endsWith('/static/site.css'))"
    )
    assert page.locator('header.site nav a').all_inner_texts() == ['Try the model', 'Score predictions', 'Runs', 'API']
    box = page.locator('#pad').bounding_box()
    assert box['width'] >= 0.8 * 390 - 40 and box['x'] >= 0 and box['x'] + box['width'] <= 390
    cdp = context.new_cdp_session(page)  # a real touch sequence (touchStart, touchMove..., touchEnd) as a finger makes
    pts = [to_screen(box, u, v) for u, v in dense(STROKES[7][0])]
    cdp.send('Input.dispatchTouchEvent', {'type': 'touchStart', 'touchPoints': [{'x': pts[0][0], 'y': pts[0][1]}]})
    for x, y in pts[1:]:
        cdp.send('Input.dispatchTouchEvent', {'type': 'touchMove', 'touchPoints': [{'x': x, 'y': y}]})
    cdp.send('Input.dispatchTouchEvent', {'type': 'touchEnd', 'touchPoints': []})
    assert reading(page) is not None and page.evaluate('window.scrollY') == 0  # read; the page did not scroll instead
    context.close()
