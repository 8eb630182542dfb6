"""Build the docs site offline, from the notebooks: `python docs/build.py [--serve]` (or `make docs`, `make docs-serve`).

The home page is the README (a map); the guide pages in docs/guide/ say what each stage does in depth; each module
notebook becomes a page with its prose, its examples with their outputs (the notebooks are run for the build as
nbdev-test runs them; the committed notebooks stay clean) and an API section (every exported name: signature, each
parameter's type, default and comment, docstring); the job notebooks, the CLI's help (appended to docs/guide/cli.md),
the runs under reports/ and the benchmark table (reports/bench/results.md) get pages of their own. The README and the
guide pages link to repository files (`nbs/02_store.ipynb`, `docs/guide/api.md`), so they read well on their own; the
build turns each such link into a link to that file's page, and stops on one that has no page.
MkDocs with Material renders it into `_site/` from package registries only: no Quarto, no download. Where Quarto is
installed, `nbdev-docs` still builds nbdev's own site from the same notebooks. Pages are named as nbdev names them
(`store.html`, and `store.html.md` beside it), so the links in the modules' docstrings work on both sites."""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_site'
DIRECTIVE = re.compile(r'^\s*#\|.*$\n?', re.MULTILINE)


# ---------------------------------------------------------------- Markdown from Quarto-flavoured notebook text


def quarto_to_md(text: str) -> str:
    "Quarto-only syntax as plain Markdown: front matter, `{...}` link attributes, `:::` callouts, `#|` directives."
    text = re.sub(r'\A---\n.*?\n---\n', '', text, flags=re.DOTALL)
    text = re.sub(r'(\]\([^)]*\))\{[^}]*\}', r'\1', text)

    def callout(m):
        kind = {'note': 'note', 'tip': 'tip', 'warning': 'warning', 'important': 'danger', 'caution': 'warning'}.get(
            m[1], 'note'
        )
        return f'!!! {kind}\n' + ''.join(f'    {l}\n' for l in m[2].strip('\n').splitlines())

    text = re.sub(r'^::: *\{\.callout-(\w+)[^}]*\}\n(.*?)^:::\s*$', callout, text, flags=re.DOTALL | re.MULTILINE)
    return DIRECTIVE.sub('', text)


# ---------------------------------------------------------------- the API section of an exported name


def _fmt(v) -> str:
    if v is inspect.Parameter.empty:
        return ''
    return v if isinstance(v, str) else getattr(v, '__name__', None) or str(v).replace('typing.', '')


def _signature(sig: inspect.Signature) -> str:
    "A signature as written in the source: annotations unquoted (the modules use postponed annotations)."
    parts, star = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append('*')
            star = True
        prefix = {p.VAR_POSITIONAL: '*', p.VAR_KEYWORD: '**'}.get(p.kind, '')
        star = star or p.kind is p.VAR_POSITIONAL
        a = f': {_fmt(p.annotation)}' if p.annotation is not p.empty else ''
        d = '' if p.default is p.empty else (f' = {p.default!r}' if a else f'={p.default!r}')
        parts.append(f'{prefix}{p.name}{a}{d}')
    ret = f' -> {_fmt(sig.return_annotation)}' if sig.return_annotation is not sig.empty else ''
    return f'({", ".join(parts)}){ret}'


def api_doc(obj, name: str) -> str:
    "Markdown for one exported function or class: signature, a table of its parameters' comments, its docstring."
    from fastcore.docments import docments

    target = obj.__init__ if inspect.isclass(obj) and '__init__' in vars(obj) else obj
    kind = 'class' if inspect.isclass(obj) else 'def'
    out = [f'### `{name}` {{ #{name} .api }}', '']
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        out += ['```python', f'{kind} {name}{_signature(sig)}', '```', '']
        try:
            docs = docments(target, full=True)
        except Exception:
            docs = {}
        rows = [
            (
                p,
                _fmt(d.get('anno')),
                '' if d.get('default') is inspect.Parameter.empty else repr(d.get('default')),
                d.get('docment') or '',
            )
            for p, d in docs.items()
            if p not in ('self', 'return')
        ]
        if any(r[3] for r in rows):
            out += ['| parameter | type | default | |', '| --- | --- | --- | --- |']
            out += [
                '| `{}` | `{}` | {} | {} |'.format(
                    p, t.replace('|', '\\|') or ' ', f'`{d}`' if d else '', c.replace('|', '\\|')
                )
                for p, t, d, c in rows
            ]
            out.append('')
    elif not callable(obj):
        out += ['```python', f'{name} = {obj!r}'[:300], '```', '']
    doc = inspect.getdoc(obj) if (callable(obj) or inspect.isclass(obj)) else None
    if doc:
        out += [doc.strip(), '']
    if inspect.isclass(obj):
        for m, f in vars(obj).items():
            if m.startswith('_') or not (inspect.isfunction(f) or isinstance(f, property)):
                continue
            d = inspect.getdoc(f) or ''
            sig = (
                ''
                if isinstance(f, property)
                else _signature(inspect.signature(f)).replace('(self, ', '(').replace('(self)', '()')
            )
            out.append(f'- `{m}{sig}`' + (f': {d.splitlines()[0]}' if d else ''))
        out.append('')
    return '\n'.join(out)


def _defined(src: str) -> list[str]:
    "Names an exported cell defines at its top level."
    try:
        tree = ast.parse(DIRECTIVE.sub('', src))
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


# ---------------------------------------------------------------- examples with their outputs


def _skip_flags() -> list[str]:
    "The project's `tst_flags` (`notest slow`): cells flagged with one are not run by nbdev-test, nor by the docs."
    from nbdev.config import get_config

    flags = get_config(ROOT).tst_flags
    return flags.split() if isinstance(flags, str) else list(flags or [])


def execute(nb_path: Path, skip_flags: list[str] | None = None) -> dict[str, list]:
    """Run a notebook as `nbdev-test` does (the same shell, from its folder, cells flagged with a `tst_flags` flag left
    out) and return each code cell's outputs by cell id; the notebook file is not touched."""
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.process import NBProcessor
    from nbdev.test import nb_test_cells

    runs = {c.id for c in nb_test_cells(nb_path, _skip_flags() if skip_flags is None else skip_flags)}
    nb = NBProcessor(nb_path, rm_directives=False, process=True).nb
    before, main = os.environ.get('IN_TEST'), sys.modules['__main__']
    os.environ['IN_TEST'] = '1'  # as nbdev-test sets it
    shell = CaptureShell(nb_path)
    try:  # warnings are shown, not raised, whoever calls (pytest's filterwarnings = error would stop Lightning's own)
        with working_directory(nb_path.parent), warnings.catch_warnings():
            warnings.simplefilter('default')
            shell.run_all(nb, exc_stop=True, preproc=lambda c: c.id not in runs)
    except Exception as e:
        raise RuntimeError(
            f'docs: {nb_path.name} failed while it ran: {shell.prettytb(fname=nb_path) or e!r}'
        ) from None
    finally:  # IPython's shell puts its own module in place of __main__: a process pool then no longer finds our functions
        sys.modules['__main__'] = main
        if before is None:
            os.environ.pop('IN_TEST', None)
        else:
            os.environ['IN_TEST'] = before
    return {c.id: [dict(o) for o in c.outputs] for c in nb.cells if c.cell_type == 'code' and c.get('outputs')}


def _code_version() -> str:
    "A hash of what a notebook's outputs depend on besides the notebook: the package it imports and the settings."
    h = hashlib.sha256()
    for f in sorted([*(ROOT / 'mlproj').rglob('*.py'), ROOT / 'settings.ini', ROOT / 'pyproject.toml']):
        if f.is_file():
            h.update(f.relative_to(ROOT).as_posix().encode() + b'\0' + f.read_bytes())
    return h.hexdigest()


def execute_all(
    notebooks: list[Path], cache: Path | None = None, workers: int | None = None
) -> tuple[dict[str, dict[str, list]], int]:
    """Outputs of each notebook by name, and how many notebooks ran: in parallel processes (one a core, as nbdev-test
    runs them), the slowest first. With `cache`, a notebook whose text and package are unchanged since a run there is
    not run again."""
    import concurrent.futures
    import multiprocessing

    code, out, todo = _code_version(), {}, []
    timings = json.loads((cache / 'timings.json').read_text()) if cache and (cache / 'timings.json').is_file() else {}
    key = lambda nb: hashlib.sha256(nb.read_bytes() + code.encode()).hexdigest()[:20]
    for nb in notebooks:
        hit = cache / f'{nb.stem}-{key(nb)}.json' if cache else None
        if hit and hit.is_file():
            out[nb.name] = json.loads(hit.read_text())
        else:
            todo.append(nb)
    todo.sort(key=lambda nb: -timings.get(nb.name, 1e9))  # unknown first, then the slowest: the cores finish together
    workers = max(1, min(len(todo), workers or os.cpu_count() or 1))

    def done(nb, outputs, seconds):
        out[nb.name] = outputs
        if cache:
            for old in cache.glob(f'{nb.stem}-*.json'):
                old.unlink()
            (cache / f'{nb.stem}-{key(nb)}.json').write_text(json.dumps(outputs))
            timings[nb.name] = round(seconds, 1)

    if workers == 1:
        for nb in todo:
            done(nb, *_timed_execute(nb))
    elif todo:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('fork')) as pool:
            futures = [(nb, pool.submit(_timed_execute, nb)) for nb in todo]
            for nb, f in futures:
                done(nb, *f.result())
    if cache:
        (cache / 'timings.json').write_text(json.dumps(timings, indent=1, sort_keys=True))
    return out, len(todo)


def _timed_execute(nb: Path) -> tuple[dict, float]:
    t = time.perf_counter()
    return execute(nb), time.perf_counter() - t


ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def _text(t) -> str:
    "An output's text as the terminal would leave it: no colour codes, a line rewritten by `\\r` shown as last written."
    t = ANSI.sub('', ''.join(t) if isinstance(t, list) else t)
    return '\n'.join(line.rstrip('\r').rsplit('\r', 1)[-1] for line in t.split('\n')).strip('\n')


def outputs_md(outputs: list[dict]) -> str:
    """A code cell's outputs as nbdev's pages show them, below its code: printed text, the value of its last line
    (Markdown, HTML, an SVG or PNG figure, else its text), a traceback. What went to stderr (warnings, progress bars)
    is left out."""
    parts = []
    for o in outputs or []:
        kind = o.get('output_type')
        if kind == 'stream':
            if o.get('name') != 'stderr' and (t := _text(o.get('text', ''))):
                parts.append(f'```text\n{t}\n```')
        elif kind in ('execute_result', 'display_data'):
            d = o.get('data', {})
            if 'text/markdown' in d:
                parts.append(_text(d['text/markdown']))
            elif 'image/svg+xml' in d:
                parts.append(_text(d['image/svg+xml']))
            elif m := next((m for m in ('image/png', 'image/jpeg', 'image/gif') if m in d), None):
                data = ''.join(d[m]).replace('\n', '')
                parts.append(f'<img alt="output" src="data:{m};base64,{data}">')
            elif 'text/html' in d:
                parts.append(_text(d['text/html']))
            elif 'text/plain' in d:
                parts.append(f'```text\n{_text(d["text/plain"])}\n```')
        elif kind == 'error':
            parts.append('```text\n' + _text('\n'.join(o.get('traceback', []))) + '\n```')
    return '<div class="nb-output" markdown>\n\n' + '\n\n'.join(parts) + '\n\n</div>' if parts else ''


# ---------------------------------------------------------------- pages


def notebook_page(nb_path: Path, outputs: dict[str, list] | None = None) -> tuple[str, str, str]:
    """(module name, title, Markdown) of a module notebook: its prose, its examples (with `outputs`, by cell id, below
    each), and the API of what it exports."""
    cells = json.loads(nb_path.read_text())['cells']
    src = lambda c: ''.join(c['source'])
    exp = next((re.search(r'#\|\s*default_exp\s+(\S+)', src(c))[1] for c in cells if '#| default_exp' in src(c)), None)
    mod = importlib.import_module(f'mlproj.{exp}') if exp else None  # a notebook that exports nothing: a tutorial
    public = set(getattr(mod, '__all__', []))
    exp = exp or nb_path.stem
    title, parts, documented = exp, [], set()
    for c in cells:
        s = src(c)
        if c['cell_type'] == 'markdown':
            if s.startswith('# ') and title == exp:
                title = s.splitlines()[0][2:].strip()
            parts.append(quarto_to_md(s))
            continue
        if re.search(r'^#\|\s*(default_exp|hide)\b', s, re.MULTILINE):
            continue
        if re.search(r'^#\|\s*export', s, re.MULTILINE):
            names = [n for n in _defined(s) if n in public and n not in documented]
            documented.update(names)
            parts += [api_doc(getattr(mod, n), n) for n in names]
        elif s.strip():
            parts.append('```python\n' + DIRECTIVE.sub('', s).strip() + '\n```')
            if out := outputs_md((outputs or {}).get(c.get('id'))):
                parts.append(out)
    missing = sorted(public - documented)
    if missing:
        parts += ['### Also exported', ''] + [api_doc(getattr(mod, n), n) for n in missing]
    body = '\n\n'.join(parts)
    source = f'\n\n*Source: `nbs/{nb_path.name}`' + (f', exported to `mlproj/{exp}.py`.*\n' if mod else '.*\n')
    return exp, title, body + source


def jobs_page() -> str:
    "The job notebooks: what each takes (its parameters cell) and what it runs."
    out = [
        '# Job notebooks',
        '',
        'Each notebook in `nbs/jobs/` is a job: papermill runs it with `-p` parameters into its own '
        'run folder under `reports/runs/` (see [Jobs](jobs.md) and the [command line](guide/cli.md)).',
        '',
    ]
    for nb in sorted((ROOT / 'nbs' / 'jobs').glob('*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        out += [f'## {nb.stem}', '', f'`mlproj {nb.stem}` or `papermill nbs/jobs/{nb.name} out.ipynb -p KEY VALUE`', '']
        for c in cells:
            s = ''.join(c['source']).strip()
            if not s:
                continue
            if c['cell_type'] == 'markdown':
                out += [quarto_to_md(s).replace('\n# ', '\n### '), '']
            else:
                params = 'parameters' in c.get('metadata', {}).get('tags', [])
                out += ['```python' + (' title="parameters"' if params else ''), DIRECTIVE.sub('', s), '```', '']
    return '\n'.join(out)


def cli_reference() -> str:
    "Every command's --help, as the CLI prints it (appended to the guide's page on the command line)."
    from mlproj.cli import build_parser

    parser = build_parser()
    subs = parser._subparsers._group_actions[0].choices
    out = ["## Every command's help", '', '```text', parser.format_help().strip(), '```', '']
    for name, sp in subs.items():
        out += [f'### mlproj {name}', '', '```text', sp.format_help().strip(), '```', '']
    return '\n'.join(out)


GUIDE = (
    'settings',
    'tasks',
    'task-wine',
    'template',
    'collecting',
    'data',
    'annotation',
    'training',
    'evaluation',
    'runs',
    'models',
    'lighter',
    'api',
    'queue',
    'unattended',
    'performance',
    'development',
    'cli',
)  # docs/guide/ in the life cycle's order; any other page follows
LINK = re.compile(r'(!?\[[^\]]*\]\()([^)\s]+)(\))')


def relink(md: str, src: Path, page: str, targets: dict[str, str]) -> str:
    """Links from the repository file `src` to other repository files, as links from its site page `page` to their
    pages (`targets`: repository path -> page); a link to a file with no page stops the build, naming both."""

    def sub(m):
        url = m[2]
        if re.match(r'[a-z][a-z0-9+.-]*:|#|/', url):
            return m[0]  # another site, an anchor on the same page, or absolute
        path, _, frag = url.partition('#')
        repo = os.path.relpath(os.path.normpath(src.parent / path), ROOT).replace(os.sep, '/')
        if repo not in targets:
            raise SystemExit(
                f'docs: {src.relative_to(ROOT)} links to {url}, which has no page in the site; '
                f'link to a notebook, a guide page, README.md, nbs/jobs or reports/bench/results.md'
            )
        rel = os.path.relpath(targets[repo], os.path.dirname(page) or '.').replace(os.sep, '/')
        return m[1] + rel + ('#' + frag if frag else '') + m[3]

    return LINK.sub(sub, md)


FIGURES = (
    '.svg',
    '.png',
    '.jpg',
    '.jpeg',
    '.gif',
    '.webp',
)  # image files a run or a sweep writes: shown on the reports page


def _copy_folder(src: Path, dst: Path) -> list[str]:
    """Copy a run's or a sweep's HTML reports and figures (not its checkpoints, notebooks or wandb files) into the site,
    keeping their relative paths (an HTML report finds its figures); return the figures' relative paths."""
    files = sorted(
        f
        for f in src.rglob('*')
        if f.is_file()
        and f.suffix.lower() in ('.html', *FIGURES)
        and not any(p == 'wandb' or p.startswith('.') for p in f.relative_to(src).parts)
    )
    for f in files:
        (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / f.relative_to(src))
    return [f.relative_to(src).as_posix() for f in files if f.suffix.lower() in FIGURES]


def _figures_md(rel: str, figs: list[str]) -> list[str]:
    return [f'![{Path(f).stem}]({rel}/{f}){{ loading=lazy }}' for f in figs] + ([''] if figs else [])


def reports_page(site: Path, reports: Path = ROOT / 'reports') -> str:
    "Every run under reports/runs/, newest first, with its parameters, headline figures, plots and its HTML report copied in; then the sweeps."
    runs_dir, sweeps_dir = reports / 'runs', reports / 'sweeps'
    out = ['# Reports', '']
    runs = sorted(runs_dir.glob('*/run.json'), key=lambda p: p.parent.name, reverse=True) if runs_dir.is_dir() else []
    sweeps = sorted(sweeps_dir.glob('*/sweep.json'), reverse=True) if sweeps_dir.is_dir() else []
    if not runs and not sweeps:
        return '\n'.join(out + ['No run yet: `make demo` (or `mlproj train`, `mlproj evaluate`) makes some.', ''])
    cell = lambda s: str(s).replace('|', '\\|')
    plots = []
    if runs:
        out += ['| run | job | state | figures | parameters | report |', '| --- | --- | --- | --- | --- | --- |']
    for rj in runs:
        try:
            run = json.loads(rj.read_text())
        except ValueError:
            continue
        d, m = rj.parent, {}
        if (d / 'metrics.json').is_file():
            try:
                m = json.loads((d / 'metrics.json').read_text())
            except ValueError:
                m = {}
        figs = []
        for k in ('val_acc', 'accuracy'):
            if isinstance(m.get(k), (int, float)):
                figs.append(f'{k} {m[k]:.4f}')
        if isinstance(m.get('model'), dict) and 'accuracy' in m['model']:
            figs.append(f'test accuracy {m["model"]["accuracy"]:.4f}')
        if isinstance(m.get('service_like'), dict) and isinstance(m['service_like'].get('accuracy'), (int, float)):
            figs.append(f'service-like accuracy {m["service_like"]["accuracy"]:.4f}')
        if isinstance(m.get('acceptance'), dict):
            figs.append('PASS' if m['acceptance'].get('passed') else 'FAIL')
        params = ', '.join(f'{k}={v}' for k, v in (run.get('parameters') or {}).items())
        images = _copy_folder(d, site / 'runs' / d.name)
        link = ' '.join(f'[{r.stem}](runs/{d.name}/{r.name})' for r in sorted(d.glob('*.html')))
        if images:
            link += f' [plots](#{d.name})'
            plots += [f'### {d.name} {{ #{d.name} }}', '', f'{run.get("job", "")}, {cell(params)}', ''] + _figures_md(
                f'runs/{d.name}', images
            )
        out.append(
            f'| `{d.name}` | {run.get("job", "")} | {run.get("state", "")} | {cell("; ".join(figs))} | {cell(params)} | {link} |'
        )
    if plots:
        out += ['', '## Plots', ''] + plots
    if sweeps:
        out += ['', '## Sweeps', '']
    for sj in sweeps:
        try:
            sw = json.loads(sj.read_text())
        except ValueError:
            continue
        d = sj.parent
        images = _copy_folder(d, site / 'sweeps' / d.name)
        names = sw.get('parameters') or []
        n = len(sw.get('runs', []))
        out += [
            f'### {d.name}',
            '',
            f'{n} run{"s" * (n != 1)} of the {sw.get("kind", "")} job, the best chosen on validation '
            'accuracy only'
            + (f' ([report](sweeps/{d.name}/index.html))' if (d / 'index.html').is_file() else '')
            + '.',
            '',
        ]
        out += _figures_md(f'sweeps/{d.name}', images)
        out += ['| ' + ' | '.join([*names, 'val acc', 'state', 'run']) + ' |', '|' + ' --- |' * (len(names) + 3)]
        for r in sw.get('runs', []):
            acc = f'{r["val_acc"]:.4f}' if isinstance(r.get('val_acc'), (int, float)) else ''
            rid = r.get('run_id') or ''
            run = (
                f'[`{rid}`](runs/{rid}/{sw.get("kind")}.html)'
                if rid and (site / 'runs' / rid / f'{sw.get("kind")}.html').is_file()
                else f'`{rid}`'
                if rid
                else ''
            )
            b = '**' if r.get('best') else ''
            out.append(
                '| '
                + ' | '.join([*(cell(r.get(n, '')) for n in names), f'{b}{acc}{b}', str(r.get('state', '')), run])
                + ' |'
            )
        out.append('')
    return '\n'.join(out) + '\n'


MKDOCS = """site_name: mlproj
site_description: Notebook-driven research-to-production template for machine learning
docs_dir: {src}/pages
site_dir: {site}
use_directory_urls: false
theme:
  name: material
  font: false  # no web fonts from a CDN: the site works offline
  features: [navigation.sections, content.code.copy, search.highlight]
extra_css: [assets/notebook.css]
plugins: [search]
markdown_extensions: [admonition, tables, attr_list, md_in_html, toc, pymdownx.superfences, pymdownx.details]
validation: {{links: {{anchors: warn}}}}  # --strict then fails on a link to a heading that does not exist
nav:
{nav}
"""


NOTEBOOK_CSS = """/* a cell's outputs, below its code, as nbdev's pages set them apart */
.nb-output { border-left: 3px solid var(--md-default-fg-color--lightest); padding-left: .8em; margin: -.6em 0 1em; }
.nb-output pre { margin: .4em 0; }
.nb-output img, .nb-output svg { max-width: 100%; height: auto; }
"""


def build(
    out: Path = SITE,
    quiet: bool = False,
    execute: bool
    | tuple = True,  # run the module notebooks and show their outputs: all, none, or these (names without .ipynb)
) -> dict:
    """Write the Markdown pages and mkdocs.yml beside `out` (in `<out>.src/`) and build the site into `out`. The module
    notebooks' outputs are kept in `<out>.src/outputs/`, so a notebook runs again only when it or the package changed."""
    t0 = time.perf_counter()
    out = Path(out).resolve()
    src = out.with_name(out.name + '.src')
    shutil.rmtree(src / 'pages', ignore_errors=True)
    (src / 'pages' / 'guide').mkdir(parents=True)
    (src / 'outputs').mkdir(exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    targets = {'README.md': 'index.md', 'nbs/jobs': 'job-notebooks.md', 'reports': 'reports.md'}
    targets.update({f'nbs/jobs/{nb.name}': 'job-notebooks.md' for nb in (ROOT / 'nbs' / 'jobs').glob('*.ipynb')})
    notebooks = sorted((ROOT / 'nbs').glob('[0-9]*.ipynb'))
    run = [nb for nb in notebooks if execute is True or (execute and nb.stem in execute)]
    t_exec = time.perf_counter()
    outputs, ran = execute_all(run, cache=src / 'outputs') if run else ({}, 0)
    t_exec = time.perf_counter() - t_exec
    modules = []
    for nb in notebooks:
        name, title, md = notebook_page(nb, outputs.get(nb.name))
        modules.append((title, f'{name}.md', md))
        targets[f'nbs/{nb.name}'] = f'{name}.md'
    tutorial = None
    if (ROOT / 'nbs' / 'tutorial.ipynb').is_file():
        _, title, md = notebook_page(ROOT / 'nbs' / 'tutorial.ipynb')
        tutorial = (title, 'tutorial.md', md)
        targets['nbs/tutorial.ipynb'] = 'tutorial.md'
    bench = ROOT / 'reports' / 'bench' / 'results.md'
    if bench.is_file():
        targets['reports/bench/results.md'] = 'benchmarks.md'
    found = {p.stem: p for p in (ROOT / 'docs' / 'guide').glob('*.md')}
    guide_files = [found.pop(n) for n in GUIDE if n in found] + sorted(found.values())
    targets.update({f'docs/guide/{p.name}': f'guide/{p.name}' for p in guide_files})
    guide = []
    for p in guide_files:
        md = relink(p.read_text(), p, f'guide/{p.name}', targets)
        if p.stem == 'cli':
            md = md.rstrip('\n') + '\n\n' + cli_reference()
        guide.append((md.split('\n', 1)[0].lstrip('# ').strip(), f'guide/{p.name}', md))
    pages = [('Home', 'index.md', relink((ROOT / 'README.md').read_text(), ROOT / 'README.md', 'index.md', targets))]
    if tutorial:
        pages.append(tutorial)
    pages += guide + modules
    pages.append(('Job notebooks', 'job-notebooks.md', jobs_page()))
    pages.append(('Reports', 'reports.md', reports_page(src / 'pages')))
    if bench.is_file():
        pages.append(('Benchmarks', 'benchmarks.md', bench.read_text()))
    for _, fname, md in pages:
        (src / 'pages' / fname).write_text(md)
    (src / 'pages' / 'assets').mkdir(exist_ok=True)
    (src / 'pages' / 'assets' / 'notebook.css').write_text(NOTEBOOK_CSS)
    entry = lambda t, f, indent='  ': f'{indent}- {json.dumps(t)}: {f}'
    nav = [entry(t, f) for t, f, _ in pages[: 2 if tutorial else 1]]
    nav += ['  - Guide:'] + [entry(t, f, '    ') for t, f, _ in guide]
    nav += [entry(t, f) for t, f, _ in pages if f in ('job-notebooks.md', 'reports.md', 'benchmarks.md')]
    nav += ['  - Modules:'] + [entry(t, f, '    ') for t, f, _ in modules]
    nav = '\n'.join(nav)
    cfg = src / 'mkdocs.yml'
    cfg.write_text(MKDOCS.format(src=src, site=out, nav=nav))
    r = subprocess.run(
        [sys.executable, '-m', 'mkdocs', 'build', '--clean', '--strict', '-f', str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'},
    )
    if r.returncode:
        raise SystemExit(f'docs: mkdocs failed:\n{r.stdout}{r.stderr}')
    for _, fname, md in pages:
        (out / fname.replace('.md', '.html.md')).write_text(md)  # nbdev's docstring links
    result = dict(
        pages=len(pages),
        modules=len(modules),
        guide=len(guide),
        executed=len(outputs),
        ran=ran,
        outputs=sum(len(o) for o in outputs.values()),
        exec_seconds=round(t_exec, 2),
        seconds=round(time.perf_counter() - t0, 2),
        site=str(out),
    )
    if not quiet:
        print(
            f'docs: {result["pages"]} pages ({result["guide"]} guide, {result["modules"]} modules; outputs of '
            f'{result["executed"]} notebooks, {result["ran"]} run in {result["exec_seconds"]} s, the others unchanged '
            f'since their last run; {result["outputs"]} cells with outputs) in {result["seconds"]} s: {out}/index.html'
        )
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        '--serve', action='store_true', help='build, then serve the site at http://127.0.0.1:8001 until Ctrl-C'
    )
    p.add_argument('--out', type=Path, default=SITE, help='where the site goes (default: _site/)')
    p.add_argument(
        '--no-exec', action='store_true', help="don't run the module notebooks: their pages show code without outputs"
    )
    a = p.parse_args(argv)
    build(a.out, execute=not a.no_exec)
    if a.serve:
        import functools
        import http.server

        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(a.out))
        print('docs: http://127.0.0.1:8001/index.html (Ctrl-C stops)')
        try:
            http.server.ThreadingHTTPServer(('127.0.0.1', 8001), handler).serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == '__main__':
    main()
