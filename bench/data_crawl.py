"""Crawl pages/s against a local static site, with the per-host rate limit off and on, side by side in one run.

    python bench/data_crawl.py [--pages 200] [--pages-limited 15] [--delay 1.0]

The site (pages linking to each other, two PNG images per page, a robots.txt) is written to a temporary folder and
served by `python -m http.server` in its own process on 127.0.0.1; the crawl is `mlproj.crawl.crawl` in this
process, storing the images in a temporary store.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlproj.console import free_port
from mlproj.crawl import crawl
from mlproj.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def write_site(d: Path, pages: int):
    "pages/0.html .. links to the next four pages and shows two images of its own."
    from PIL import Image

    (d / 'p').mkdir(parents=True)
    (d / 'i').mkdir()
    (d / 'robots.txt').write_text('User-agent: *\nDisallow: /private/\n')
    for i in range(pages):
        links = ''.join(f'<a href="/p/{j}.html">{j}</a> ' for j in range(i + 1, min(pages, i + 5)))
        (d / 'p' / f'{i}.html').write_text(
            f'<html><body><h1>{i}</h1>{links}<img src="/i/{i}a.png"><img src="/i/{i}b.png"></body></html>'
        )
        for k, v in (('a', i % 256), ('b', (i * 7 + 3) % 256)):
            b = io.BytesIO()
            im = Image.new('L', (16, 16), v)
            im.putpixel((i % 16, (i // 16) % 16), 255 - v)
            im.save(b, 'PNG')
            (d / 'i' / f'{i}{k}.png').write_bytes(b.getvalue())


def serve(d: Path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1', '--directory', str(d)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f'http://127.0.0.1:{port}'
    for _ in range(100):
        try:
            urllib.request.urlopen(url + '/robots.txt', timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError('the site did not start')


def run(url: str, pages: int, delay: float, tmp: Path, name: str) -> dict:
    s = load_settings(
        ROOT / 'settings.ini',
        env={'MLPROJ_PATHS_STORE': str(tmp / f'store-{name}'), 'MLPROJ_COLLECT_STATE': str(tmp / f'crawls-{name}')},
    )
    r = crawl(s, url + '/p/0.html', progress=False, delay=delay, max_pages=pages, max_depth=10_000)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--pages', type=int, default=200, help='pages crawled with the rate limit off')
    ap.add_argument('--pages-limited', type=int, default=15, help='pages crawled with the rate limit on')
    ap.add_argument(
        '--delay', type=float, default=1.0, help='seconds between requests when the limit is on (settings.ini default)'
    )
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix='bench-crawl-') as t:
        tmp = Path(t)
        write_site(tmp / 'site', a.pages)
        proc, url = serve(tmp / 'site')
        try:
            off = run(url, a.pages, 0.0, tmp, 'off')
            on = run(url, a.pages_limited, a.delay, tmp, 'on')
        finally:
            proc.terminate()
            proc.wait()
    for name, r, d in (('off', off, 0.0), ('on', on, a.delay)):
        print(
            f'rate limit {name:3} (delay {d:g} s): {r["page"]} pages, {r["stored"]} images stored, {r["requests"]} requests '
            f'in {r["seconds"]:.1f} s: {r["pages_per_s"]:.2f} pages/s, {r["requests"] / r["seconds"]:.2f} requests/s'
        )
    print(
        f'ratio on/off: {on["pages_per_s"] / off["pages_per_s"]:.3f} (pages/s); with the limit on, a page and its two images '
        f'take at least {3 * a.delay:g} s'
    )


if __name__ == '__main__':
    main()
