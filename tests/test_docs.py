"""The docs site built offline from the notebooks, checked as files and in a real browser; notebooks merge in git."""

import functools
import http.server
import json
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / 'docs'))
import build as docs_build

MODULES = sorted(
    json.loads(nb.read_text())['cells'][1]['source'][0].split()[-1] for nb in (ROOT / 'nbs').glob('[0-9]*.ipynb')
)
GUIDE = sorted((ROOT / 'docs' / 'guide').glob('*.md'))


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs') / 'site'
    result = docs_build.build(out, quiet=True, execute=('00_settings',))  # the whole run is the full tier's, below
    assert result['executed'] == 1 and result['ran'] == 1
    return out


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.text = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('href', 'src'):
            if a.get(k):
                self.links.append(a[k])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text())
    return p


def test_every_module_has_a_page_with_its_api(site):
    import importlib

    for m in MODULES:
        page = (site / f'{m}.html').read_text()
        names = importlib.import_module(f'mlproj.{m}').__all__
        assert 'class="api"' in page or 'class="api"' in page, m
        for n in names:
            assert f'id="{n}"' in page, f'{m}.{n} has no API entry'
        assert (site / f'{m}.html.md').is_file()  # the link in the module's docstring
    assert 'usage: mlproj train' in (site / 'guide' / 'cli.html').read_text()
    assert (site / 'search' / 'search_index.json').is_file()


def _pages(site):
    "The site's pages: the top level and the guide (404.html is served at any depth, so its links are absolute)."
    return sorted(p for p in [*site.glob('*.html'), *site.glob('guide/*.html')] if p.name != '404.html')


def test_pages_leak_no_directives_and_have_no_broken_internal_links(site):
    pages = _pages(site)
    assert len(pages) >= len(MODULES) + len(GUIDE) + 3
    checked = 0
    for page in pages:
        p = _parse(page)
        text = ''.join(p.text)
        assert not re.search(r'^\s*#\|', text, re.MULTILINE), f'{page.name} shows a #| directive'
        assert ':::' not in text and '{target=' not in text, f'{page.name} shows Quarto syntax'
        for link in p.links:
            url = urlparse(link)
            if url.scheme or link.startswith(('#', 'mailto:', 'data:')):
                continue
            target = (page.parent / urldefrag(url.path)[0]).resolve()
            assert target.exists(), f'{page.name} links to missing {link}'
            checked += 1
    assert checked > 100


def test_every_module_notebook_explains_its_stage_and_the_why_before_each_exported_cell():
    import prose_count  # docs/prose_count.py (`make prose`)

    missing = {}
    for nb in sorted((ROOT / 'nbs').glob('[0-9]*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        after = next(i for i, c in enumerate(cells) if '#| default_exp' in ''.join(c['source'])) + 1
        opening = (
            ''.join(cells[after]['source']) if after < len(cells) and cells[after]['cell_type'] == 'markdown' else ''
        )
        if '## Where this fits' not in opening:
            missing[nb.name] = ['an opening "## Where this fits" cell after default_exp']
        if gaps := prose_count.count(json.loads(nb.read_text()))['missing']:
            missing.setdefault(nb.name, []).extend(gaps)
    assert not missing, (
        'add a markdown cell saying why (the decision, the alternative, the failure it prevents) before: '
        + '; '.join(f'{n}: {", ".join(g)}' for n, g in missing.items())
    )


def test_readme_is_a_map_of_at_most_200_lines_whose_links_exist():
    readme = (ROOT / 'README.md').read_text()
    assert len(readme.splitlines()) <= 200, 'the README is a map: move the detail into a page of docs/guide/'
    links = [m[2] for m in docs_build.LINK.finditer(readme) if not re.match(r'[a-z][a-z0-9+.-]*:|#', m[2])]
    pages = [l for l in links if l.startswith('docs/')]
    assert len(pages) >= 10  # one a stage
    for link in links:
        assert (ROOT / link.partition('#')[0]).exists(), f'README.md links to missing {link}'


def test_every_command_and_subcommand_has_help_and_a_place_in_the_guide():
    from mlproj.cli import build_parser

    guide = '\n'.join(p.read_text() for p in GUIDE)

    def commands(parser, prefix):
        for group in (a for a in parser._actions if a.__class__.__name__ == '_SubParsersAction'):
            helps = {a.dest: a.help for a in group._choices_actions}
            for name, sub in group.choices.items():
                yield f'{prefix} {name}', helps.get(name) or sub.description
                yield from commands(sub, f'{prefix} {name}')

    found = list(commands(build_parser(), 'mlproj'))
    # the walk found the commands (the core ones at least: a project may leave optional stages' commands out)
    assert {'mlproj data', 'mlproj train', 'mlproj evaluate', 'mlproj serve', 'mlproj models'} <= {c for c, _ in found}
    for cmd, help in found:
        assert help, f'{cmd} has no help'
        assert re.search(re.escape(cmd) + r'\b', guide), f'{cmd} appears on no page of docs/guide/'


def test_guide_links_become_links_between_pages_and_a_link_without_a_page_stops_the_build():
    targets = {'nbs/02_store.ipynb': 'store.md', 'docs/guide/api.md': 'guide/api.md', 'README.md': 'index.md'}
    md = '[store](../../nbs/02_store.ipynb) [api](api.md#predictions) [out](https://x.org/a.md) [here](#top) ![f](api.md)'
    assert (
        docs_build.relink(md, ROOT / 'docs' / 'guide' / 'data.md', 'guide/data.md', targets)
        == '[store](../store.md) [api](api.md#predictions) [out](https://x.org/a.md) [here](#top) ![f](api.md)'
    )
    assert (
        docs_build.relink('[s](nbs/02_store.ipynb) [a](docs/guide/api.md#x)', ROOT / 'README.md', 'index.md', targets)
        == '[s](store.md) [a](guide/api.md#x)'
    )
    with pytest.raises(SystemExit, match=r'docs/guide/data.md links to \.\./\.\./deploy/app.py'):
        docs_build.relink('[app](../../deploy/app.py)', ROOT / 'docs' / 'guide' / 'data.md', 'guide/data.md', targets)


def _notebook(path, *sources):
    cells = [{'cell_type': 'markdown', 'id': 'title', 'metadata': {}, 'source': ['# An example']}]
    cells += [
        {'cell_type': 'code', 'execution_count': None, 'id': f'c{i}', 'metadata': {}, 'outputs': [], 'source': [s]}
        for i, s in enumerate(sources)
    ]
    path.write_text(
        json.dumps(
            {
                'cells': cells,
                'metadata': {'kernelspec': {'language': 'python', 'name': 'python3'}},
                'nbformat': 4,
                'nbformat_minor': 5,
            },
            indent=1,
        )
        + '\n'
    )
    return path


def test_a_notebook_page_shows_each_example_with_its_outputs_and_the_notebook_stays_clean(tmp_path):
    nb = _notebook(
        tmp_path / 'example.ipynb',
        "print('hello from the example')",
        '6 * 7',
        "#| notest\nraise SystemExit('a notest cell ran')",
        "#| slow\nraise SystemExit('a slow cell ran')",
        "import sys\nprint('a warning', file=sys.stderr)",
        "from IPython.display import Markdown\nMarkdown('**made by the example**')",
    )
    before = nb.read_bytes()
    outputs = docs_build.execute(nb)
    assert nb.read_bytes() == before  # outputs live in the build only
    assert set(outputs) == {'c0', 'c1', 'c4', 'c5'}  # c2 and c3 carry tst_flags: not run
    _, title, md = docs_build.notebook_page(nb, outputs)
    assert title == 'An example'
    assert (
        '```python\nprint(\'hello from the example\')\n```\n\n<div class="nb-output" markdown>\n\n```text\nhello from the example\n```'
        in md
    )
    assert '```text\n42\n```' in md and '**made by the example**' in md
    assert "raise SystemExit('a notest cell ran')" in md and "raise SystemExit('a slow cell ran')" in md  # code kept
    assert '```text\na warning' not in md  # stderr (warnings, progress bars) is left out
    assert (
        docs_build.outputs_md(
            [
                {'output_type': 'stream', 'name': 'stdout', 'text': ['\x1b[1m10%\r100%\x1b[0m\n']},
                {'output_type': 'display_data', 'data': {'image/png': 'iVBORw0KGgo=\n', 'text/plain': 'x'}},
            ]
        )
        == '<div class="nb-output" markdown>\n\n```text\n100%\n```\n\n<img alt="output" src="data:image/png;base64,iVBORw0KGgo=">\n\n</div>'
    )


def test_notebook_outputs_are_reused_until_the_notebook_changes_and_a_failing_one_is_named(tmp_path):
    runs, cache = tmp_path / 'runs.txt', tmp_path / 'cache'
    RAN = {'name': 'stdout', 'output_type': 'stream', 'text': ['ran\n']}
    cache.mkdir()
    count = f"from pathlib import Path\nruns = Path({str(runs)!r})\nruns.write_text(runs.read_text() + 'x' if runs.exists() else 'x')\n"
    nb = _notebook(tmp_path / 'counted.ipynb', count + "print('ran')")
    for ran in (1, 0):
        assert docs_build.execute_all([nb], cache=cache) == ({'counted.ipynb': {'c0': [RAN]}}, ran)
    assert runs.read_text() == 'x'
    _notebook(nb, count + "print('ran again')")
    assert docs_build.execute_all([nb], cache=cache)[0]['counted.ipynb']['c0'][0]['text'] == ['ran again\n']
    assert runs.read_text() == 'xx' and len(list(cache.glob('counted-*.json'))) == 1
    with pytest.raises(RuntimeError, match=r'broken.ipynb failed while it ran.*ZeroDivisionError'):
        docs_build.execute(_notebook(tmp_path / 'broken.ipynb', '1/0'))


@pytest.mark.full
def test_the_site_build_runs_every_module_notebook_and_leaves_them_clean(tmp_path):
    before = {nb: nb.read_bytes() for nb in (ROOT / 'nbs').glob('*.ipynb')}
    result = docs_build.build(tmp_path / 'site', quiet=True)
    assert result['executed'] == result['ran'] == len(MODULES) and result['outputs'] > 0
    assert {nb: nb.read_bytes() for nb in (ROOT / 'nbs').glob('*.ipynb')} == before
    assert 'class="nb-output"' in ''.join(p.read_text() for p in (tmp_path / 'site').glob('*.html'))


def test_quarto_syntax_becomes_markdown():
    md = docs_build.quarto_to_md(
        '---\ntitle: x\n---\n[a](b.html){target="_blank"}\n::: {.callout-note}\nSee this.\n:::\n#| echo: false\n'
    )
    assert md == '[a](b.html)\n!!! note\n    See this.\n'


def test_reports_page_shows_every_run_with_its_parameters_figures_plots_and_sweeps(tmp_path):
    reports, site = tmp_path / 'reports', tmp_path / 'site'
    train, ev = reports / 'runs' / '20260101-000000-train-aaaaaa', reports / 'runs' / '20260101-000100-evaluate-bbbbbb'
    for d, job, params, metrics in [
        (train, 'train', {'max_epochs': 3, 'lr': 0.003}, {'val_acc': 0.97}),
        (
            ev,
            'evaluate',
            {'train_run': train.name},
            {'model': {'accuracy': 0.981}, 'service_like': {'accuracy': 0.955}, 'acceptance': {'passed': True}},
        ),
    ]:
        d.mkdir(parents=True)
        (d / 'run.json').write_text(json.dumps(dict(run_id=d.name, job=job, state='done', parameters=params)))
        (d / 'metrics.json').write_text(json.dumps(metrics))
        (d / f'{job}.html').write_text('<html>report</html>')
        (d / 'model.safetensors').write_bytes(b'weights')  # not copied: the site holds reports, not models
    (ev / 'confusion.svg').write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (ev / 'figures').mkdir()
    (ev / 'figures' / 'recall.png').write_bytes(b'png')  # a report's figures folder keeps its layout
    (train / 'wandb' / 'media').mkdir(parents=True)
    (train / 'wandb' / 'media' / 'x.png').write_bytes(b'png')  # not a report
    sweep = reports / 'sweeps' / 'sw1'
    sweep.mkdir(parents=True)
    (sweep / 'sweep.json').write_text(
        json.dumps(
            dict(
                sweep='sw1',
                kind='train',
                parameters=['lr'],
                best='j1',
                runs=[dict(job='j1', state='done', run_id=train.name, val_acc=0.97, best=True, lr=0.003)],
            )
        )
    )
    (sweep / 'val_acc.svg').write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (sweep / 'index.html').write_text('<html/>')
    md = docs_build.reports_page(site, reports)
    row = next(l for l in md.splitlines() if ev.name in l and l.startswith('|'))
    assert (
        'test accuracy 0.9810' in row
        and 'service-like accuracy 0.9550' in row
        and 'PASS' in row
        and f'train_run={train.name}' in row
    )
    assert 'max_epochs=3, lr=0.003' in md and f'[evaluate](runs/{ev.name}/evaluate.html)' in md
    assert f'](runs/{ev.name}/confusion.svg)' in md and f'[plots](#{ev.name})' in md
    assert '](sweeps/sw1/val_acc.svg)' in md and '**0.9700**' in md and f'(runs/{train.name}/train.html)' in md
    assert (site / 'runs' / ev.name / 'confusion.svg').is_file() and (site / 'sweeps' / 'sw1' / 'index.html').is_file()
    assert (
        f'](runs/{ev.name}/figures/recall.png)' in md and (site / 'runs' / ev.name / 'figures' / 'recall.png').is_file()
    )
    assert (
        not (site / 'runs' / train.name / 'model.safetensors').exists()
        and not (site / 'runs' / train.name / 'wandb').exists()
    )
    assert f'[plots](#{train.name})' not in md


@pytest.mark.browser
def test_site_renders_and_searches_in_a_real_browser(site, browser):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{server.server_address[1]}/'
    page = browser.new_page()
    errors = []
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.on('response', lambda r: r.status >= 400 and errors.append(f'{r.status} {r.url}'))
    page.on(
        'request', lambda r: r.url.startswith((base, 'data:', 'blob:')) or errors.append(f'outside request {r.url}')
    )
    try:
        for p in _pages(site):
            page.goto(urljoin(base, p.relative_to(site).as_posix()))
            assert page.locator('article h1').count() >= 1, p.name
            if p.parent == site and p.stem in MODULES:
                assert page.locator('.api').count() >= 1, p.name
        page.goto(base + 'index.html')
        page.keyboard.press('s')  # Material's search shortcut
        page.keyboard.type('registry')
        page.wait_for_selector('.md-search-result__item', timeout=15000)
        assert 'registry' in page.locator('.md-search-result__list').inner_text().lower()
    finally:
        page.close()
        server.shutdown()
        server.server_close()
    assert errors == []


def _git(cwd, *args):
    return subprocess.run(['git', *args], cwd=cwd, capture_output=True, text=True)


def test_two_branches_editing_one_notebook_merge_keeping_both(tmp_path):
    def nb(*cells):
        return (
            json.dumps(
                {
                    'cells': [
                        {
                            'cell_type': 'code',
                            'execution_count': None,
                            'id': f'{i:08x}',
                            'metadata': {},
                            'outputs': [],
                            'source': [s],
                        }
                        for i, s in cells
                    ],
                    'metadata': {},
                    'nbformat': 4,
                    'nbformat_minor': 5,
                },
                indent=1,
            )
            + '\n'
        )

    _git(tmp_path, 'init', '-q', '-b', 'main')
    for k, v in {
        'user.email': 't@example.invalid',
        'user.name': 't',
        'merge.jupyternotebook.driver': f'{ROOT}/.venv/bin/nbdev-merge %O %A %B %P',
    }.items():
        _git(tmp_path, 'config', k, v)
    (tmp_path / '.gitattributes').write_text((ROOT / '.gitattributes').read_text())
    f = tmp_path / 'a.ipynb'
    f.write_text(nb((1, 'x = 1'), (2, 'y = 2')))
    _git(tmp_path, 'add', '.')
    _git(tmp_path, 'commit', '-qm', 'base')
    _git(tmp_path, 'checkout', '-qb', 'ann')
    f.write_text(nb((1, 'x = 1'), (10, 'ann = 1'), (2, 'y = 2')))
    _git(tmp_path, 'commit', '-qam', 'ann')
    _git(tmp_path, 'checkout', '-q', 'main')
    f.write_text(nb((1, 'x = 1'), (11, 'bob = 1'), (2, 'y = 2')))
    _git(tmp_path, 'commit', '-qam', 'bob')
    r = _git(tmp_path, 'merge', 'ann', '-m', 'merge')
    # both added a cell at the same place: git alone would leave <<<<<<< lines inside the JSON, a file Jupyter
    # cannot open; nbdev's driver leaves a valid notebook that keeps both cells between marker cells, for a person
    # to choose in Jupyter (git still reports the conflict, so nobody commits it by accident)
    assert r.returncode == 1 and 'conflict' in r.stdout.lower()
    merged = json.loads(f.read_text())
    cells = [(c['cell_type'], ''.join(c['source'])) for c in merged['cells']]
    assert {('code', 'x = 1'), ('code', 'ann = 1'), ('code', 'bob = 1'), ('code', 'y = 2')} <= set(cells)
    markers = [s for t, s in cells if t == 'markdown']
    assert len(markers) == 3 and markers[0].startswith('`<<<<<<<') and markers[2].startswith('`>>>>>>>')


def test_two_branches_editing_different_cells_merge_cleanly(tmp_path):
    import shutil

    _git(tmp_path, 'init', '-q', '-b', 'main')
    for k, v in {
        'user.email': 't@example.invalid',
        'user.name': 't',
        'merge.jupyternotebook.driver': f'{ROOT}/.venv/bin/nbdev-merge %O %A %B %P',
    }.items():
        _git(tmp_path, 'config', k, v)
    (tmp_path / '.gitattributes').write_text((ROOT / '.gitattributes').read_text())
    f = tmp_path / 'nb.ipynb'
    shutil.copy(ROOT / 'nbs' / '02_store.ipynb', f)
    _git(tmp_path, 'add', '.')
    _git(tmp_path, 'commit', '-qm', 'base')
    nb = json.loads(f.read_text())

    def edit(i, text):
        nb2 = json.loads(f.read_text())
        nb2['cells'][i]['source'] = [text]
        f.write_text(json.dumps(nb2, indent=1, ensure_ascii=False) + '\n')

    _git(tmp_path, 'checkout', '-qb', 'ann')
    edit(2, 'Ann rewrote the introduction.')
    _git(tmp_path, 'commit', '-qam', 'ann')
    _git(tmp_path, 'checkout', '-q', 'main')
    edit(len(nb['cells']) - 1, 'assert True # Bob')
    _git(tmp_path, 'commit', '-qam', 'bob')
    r = _git(tmp_path, 'merge', 'ann', '-m', 'merge')
    assert r.returncode == 0, r.stdout + r.stderr
    sources = [''.join(c['source']) for c in json.loads(f.read_text())['cells']]
    assert 'Ann rewrote the introduction.' in sources and sources[-1] == 'assert True # Bob'
