"""How much each module notebook explains: `python docs/prose_count.py [--rev REV] [--missing]` (or `make prose`).

Per notebook in nbs/ (the `NN_topic` ones that export a module): markdown lines (every line of every markdown
cell, the measure issue 13 reports before and after), exported cells that define a public name, and how many of
those have a markdown cell of prose (not a heading alone) right before them (the "why" that the notebooks give before each exported function).
`--rev REV` reads the notebooks as they were at a git revision (e.g. `--rev origin/main`), so a "before" figure
can be measured again later; `--missing` lists the exported names that have no markdown cell before them."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

from build import _defined  # docs/build.py: the same reading of an exported cell's names

ROOT = Path(__file__).resolve().parents[1]


def _notebooks(rev: str | None) -> dict[str, dict]:
    "Module notebooks by file name: from the work tree, or from `rev` through git."
    if rev is None:
        return {p.name: json.loads(p.read_text()) for p in sorted((ROOT / 'nbs').glob('[0-9]*.ipynb'))}
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names = [n.rsplit('/', 1)[-1] for n in git('ls-tree', '--name-only', rev, 'nbs/').split()]
    return {n: json.loads(git('show', f'{rev}:nbs/{n}')) for n in sorted(names) if re.match(r'\d+_.*\.ipynb$', n)}


def _public(src: str) -> list[str]:
    "Public names an exported cell defines at its top level (functions, classes, constants)."
    return [n for n in _defined(src) if not n.startswith('_')]


def count(nb: dict) -> dict:
    "Markdown lines, exported cells with public names, and those of them that a markdown cell introduces."
    cells = nb['cells']
    src = lambda c: ''.join(c['source'])
    md_lines = sum(len(src(c).splitlines()) for c in cells if c['cell_type'] == 'markdown')
    exported, explained, missing = 0, 0, []
    for i, c in enumerate(cells):
        if c['cell_type'] != 'code' or not re.search(r'^#\|\s*export\b', src(c), re.MULTILINE):
            continue
        names = _public(src(c))
        if not names:
            continue  # imports, private helpers
        exported += 1
        prev = src(cells[i - 1]) if i and cells[i - 1]['cell_type'] == 'markdown' else ''
        if any(l.strip() and not l.startswith('#') for l in prev.splitlines()):
            explained += 1  # a heading alone says no why
        else:
            missing.append(', '.join(names))
    return dict(markdown_lines=md_lines, exported_cells=exported, explained=explained, missing=missing)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rev', help='count the notebooks as they are at this git revision (default: the work tree)')
    p.add_argument('--missing', action='store_true', help='list exported names with no markdown cell before them')
    p.add_argument('--json', action='store_true', help='print JSON instead of a table')
    a = p.parse_args(argv)
    rows = {n: count(nb) for n, nb in _notebooks(a.rev).items()}
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f'{"notebook":<22} {"markdown lines":>14} {"exported cells":>14} {"explained":>9}')
    for n, r in rows.items():
        print(f'{n:<22} {r["markdown_lines"]:>14} {r["exported_cells"]:>14} {r["explained"]:>9}')
        if a.missing and r['missing']:
            print('  no why before: ' + '; '.join(r['missing']))
    tot = {k: sum(r[k] for r in rows.values()) for k in ('markdown_lines', 'exported_cells', 'explained')}
    print(f'{"total":<22} {tot["markdown_lines"]:>14} {tot["exported_cells"]:>14} {tot["explained"]:>9}')


if __name__ == '__main__':
    main()
