"""Rename a freshly copied template to a team's names: copier's task after every `copier copy` and `copier update`.

The template is this repository as it is, a working project named `mlproj` (see docs/guide/template.md): copier copies
its files unchanged, then runs this script in the new project's folder. It touches only the files the template ships
(listed from the template's own copy, `--src`), never a team's own files, and does the same thing every time for the
same answers: `copier update` replays it on the old and the new template version and merges the differences, so any
randomness or dependence on the destination's state would show up as false conflicts.

What it does, in this order:
0. removes each optional stage answered "no" (`--queue False`): the files template/stages.toml lists for it, the
   notebook cells with a line saying `cell-only-with: <stage>`, the lines that say it, and the lines from one saying
   `begin-only-with: <stage>` to one saying `end-only-with: <stage>` (the registrations: CLI, API routes, deploy
   recipes, docs rows);
1. moves the package folder `mlproj/` to `<package>/` (over the files there: they are the team's last version, which
   copier's update merges back afterwards);
2. removes the blocks between `<!-- template-only -->` and `<!-- /template-only -->` (the template's own
   instructions, such as how to generate a project);
3. rewrites the names in every text file: the docs addresses, the console command (`mlproj <subcommand>`, `bin/mlproj`,
   the argparse `prog`, the `[project.scripts]` key, `"mlproj", "serve"` command lists), the settings prefix
   (`MLPROJ` -> `<PREFIX>`), then every other `mlproj` (the package: imports, paths, Redis keys, nbdev's config);
4. lays `<package>/_modidx.py` out again as nbdev writes it (its keys sort differently under another name);
5. sets the starting task in settings.ini (`[task] name`, where settings.ini has that section): for the empty
   skeleton, `<package>.skeleton` (nbs/27_skeleton.ipynb), and the Makefile's notebook tests then run on the digits;
6. titles the README with the project's name and says which template version it came from (the only line, with
   copier's answers file, that still says `mlproj`);
7. tidies what a longer or shorter name disturbs, with the project's own tools where copier's Python has them (copier
   is in the dev extra, so `.venv/bin/copier` does): ruff sorts the imports and formats the template's code again
   (a line that grew past 120 characters), then nbdev-export and nbdev-clean write the package from the notebooks.
   Without them the project is still right but `make test`'s lint and sync checks fail until `make export` and
   `ruff format` run once; the script says so.

Standard library only: it runs in copier's own Python (`{{ _copier_python }}`), not the project's.
"""

import argparse
import ast
import fnmatch
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from pprint import pformat

OLD = 'mlproj'  # the template's own name: package, command and (upper case) settings prefix
SKIP_DIRS = {'.git', '.venv', '__pycache__', '.ipynb_checkpoints', '.pytest_cache'}
TEMPLATE_ONLY = re.compile(r'[ \t]*<!-- template-only -->.*?<!-- /template-only -->[ \t]*\n?', re.DOTALL)
STAGES = ('crawler', 'annotation', 'queue')  # the optional stages copier.yml asks about (template/stages.toml)
README_SOURCE = (
    'Generated from the [mlproj](https://github.com/mlproj/mlproj) template at {version} '
    '([updating it](docs/guide/template.md#updating-a-project-to-a-later-template-version))'
)


def template_files(src: Path) -> list[str]:
    "Every file the template ships, as paths relative to its root (`/`-separated, sorted: the order is fixed)."
    out = []
    for root, dirs, names in os.walk(src):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        out += [(Path(root) / n).relative_to(src).as_posix() for n in names]
    return sorted(out)


def subcommands(readme: str) -> list[str]:
    "The CLI's commands, as the README names them (tests/test_cli.py checks that it names every one)."
    return sorted(set(re.findall(rf'`{OLD} ([a-z][a-z-]*)', readme)), key=lambda s: (-len(s), s))


def rename_text(text: str, a: argparse.Namespace, subs: list[str]) -> str:
    "The names of one file's text rewritten (rules in the module docstring's step 3)."
    text = TEMPLATE_ONLY.sub('', text)
    # docs addresses: GitHub owners and host names take no underscores, so the owner and the repository name are answers
    text = text.replace(f'github.com/{OLD}/{OLD}', f'github.com/{a.owner}/{a.repo}')
    text = re.sub(
        rf'{OLD}\.github\.io(/{OLD})?', lambda m: f'{a.owner}.github.io' + (f'/{a.repo}' if m[1] else ''), text
    )
    text = text.replace(f"'doc_baseurl': '/{OLD}'", f"'doc_baseurl': '/{a.repo}'")
    text = text.replace(f'{OLD}.invalid', f'{a.repo}.invalid')
    # the console command
    sub = '|'.join(map(re.escape, subs))
    cmd = [
        rf'(?<![\w.-]){OLD}(?= (?:{sub})\b| \{{| --|: )',  # `mlproj train`, `mlproj {cmd}`, `mlproj --help`, `mlproj: error`
        rf'(?<=bin/){OLD}\b(?![.])',  # .venv/bin/mlproj
        rf'(?<![\w.-]){OLD}(?=`? (?:command|console script|is one command|and its subcommands)\b|`: one command)',
        rf'(?<=usage: ){OLD}\b(?![./])',  # argparse's usage line
        rf"(?<=prog=')({OLD})(?=')",
        rf"(?<='bin' / '){OLD}(?=')",  # ROOT / '.venv' / 'bin' / 'mlproj'
        rf"(?<=with_name\('){OLD}(?='\))",
        rf"(?<=parent / '){OLD}(?=')",
        rf"(?<=build_parser\(\), '){OLD}(?=')",
        rf'(?<=[\'"]){OLD}(?=[\'"],\s*[\'"](?:{sub})[\'"])',  # ["mlproj", "serve", ...]
        rf'(?m)^{OLD}(?= = "{OLD}\.cli:main")',  # [project.scripts]
    ]
    for pattern in cmd:
        text = re.sub(pattern, a.command, text)
    text = text.replace(OLD.upper(), a.prefix)
    return text.replace(OLD, a.package)


def stages(src: Path) -> dict:
    "template/stages.toml: each optional stage's files, and whether it can be removed yet."
    import tomllib

    manifest = tomllib.loads((src / 'template' / 'stages.toml').read_text())
    assert set(manifest) == set(STAGES), f'template/stages.toml describes {sorted(manifest)}, not {STAGES}'
    return manifest


def drop_lines(text: str, drop: list[str]) -> str:
    "`text` without the lines marked `only-with: <a dropped stage>` nor the `begin-only-with`/`end-only-with` blocks."
    if 'only-with: ' not in text:
        return text
    out, inside = [], None
    for line in text.splitlines(True):
        m = re.search(r'(?<!cell-)\b(begin-|end-)?only-with: ([a-z]+)', line)
        if inside:
            if m and m[1] == 'end-' and m[2] == inside:
                inside = None
            continue
        if m and m[2] in drop:
            inside = m[2] if m[1] == 'begin-' else None
            continue
        out.append(line)
    assert not inside, f'a begin-only-with: {inside} block has no end-only-with: {inside}'
    return ''.join(out)


def drop_cells(text: str, drop: list[str]) -> str:
    "A notebook without the cells marked `cell-only-with: <a dropped stage>` (any line), other marked lines dropped."
    if 'only-with: ' not in text:
        return text
    nb = json.loads(text)
    cells = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if any(m in drop for m in re.findall(r'\bcell-only-with: ([a-z]+)', src)):
            continue
        c['source'] = drop_lines(src, drop).splitlines(True)
        cells.append(c)
    nb['cells'] = cells
    return json.dumps(nb, indent=1, ensure_ascii=False) + '\n'


def modidx_layout(text: str) -> str:
    "`_modidx.py` as nbdev-export writes it (doclinks._build_modidx), so that the sync check finds nothing to change."
    head, _, body = text.partition('d = ')
    d = ast.literal_eval(body)
    return head + 'd = ' + pformat(d, width=140, indent=2, compact=True) + '\n'


def set_task(text: str, task: str) -> str:
    "settings.ini with `[task] name = <task>` (unchanged where it has no [task] section yet: issue 21)."
    return re.sub(r'(?ms)^(\[task\]\n(?:(?!\[).*?\n)*?)name = .*?$', lambda m: f'{m[1]}name = {task}', text, count=1)


def skeleton_nbtest(text: str, prefix: str) -> str:
    "The Makefile of a project whose task is the empty skeleton: the notebooks' examples run on the digits task."
    line = '\t$(BIN)/nbdev-test\n'
    assert line in text, 'the Makefile has no nbdev-test line to give a task'
    return text.replace(
        line,
        f"\t@# the notebooks' examples need a working task: the digits, until settings.ini names yours (then drop this)\n"
        f'\t{prefix}_TASK_NAME=digits $(BIN)/nbdev-test\n',
    )


def readme_head(text: str, a: argparse.Namespace) -> str:
    "The README titled with the project's name, then the one line saying where it came from."
    first, _, rest = text.partition('\n')
    assert first.startswith('# '), f'README.md should start with its title, not {first!r}'
    return f'# {a.project_name}\n\n{README_SOURCE.format(version=a.version)}.\n' + rest


def tidy(dst: Path, files: list[str]) -> bool:
    "Step 7: ruff (imports, format) on the template's code, then nbdev-export and nbdev-clean; False without them."
    py = sys.executable
    if subprocess.run([py, '-c', 'import ruff, nbdev'], capture_output=True).returncode:
        print(
            f"{py} has no ruff or nbdev (run copier from the project's .venv, whose dev extra has all three): after "
            'generating, run `make export` and `.venv/bin/ruff check --fix . && .venv/bin/ruff format .` once',
            file=sys.stderr,
        )
        return False
    code = [f for f in files if f.endswith(('.py', '.ipynb'))]
    run = functools.partial(subprocess.run, cwd=dst, check=True, stdout=subprocess.DEVNULL)
    # --force-exclude: the package folder is written by nbdev, never formatted (pyproject.toml's [tool.ruff.format])
    run([py, '-m', 'ruff', 'check', '--quiet', '--force-exclude', '--fix', '--select', 'I', *code])
    run([py, '-m', 'ruff', 'format', '--quiet', '--force-exclude', *code])
    run([py, '-c', 'from nbdev.doclinks import nbdev_export; nbdev_export()'])
    run([py, '-c', 'from nbdev.clean import nbdev_clean; nbdev_clean()'])
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--src', type=Path, required=True, help="the template's copy at the version being generated")
    p.add_argument('--dst', type=Path, default=Path('.'), help='the generated project (default: here)')
    p.add_argument('--project-name', required=True)
    p.add_argument('--package', required=True)
    p.add_argument('--command', required=True)
    p.add_argument('--prefix', required=True)
    p.add_argument('--owner', required=True, help='GitHub owner of the project (its docs address too)')
    p.add_argument('--repo', required=True, help='repository name (its docs address too)')
    p.add_argument('--task', required=True)
    p.add_argument('--version', required=True, help='the template version, as copier describes it (a tag or a commit)')
    for stage in STAGES:
        p.add_argument(f'--{stage}', choices=['True', 'False'], default='True', help=f'keep the {stage} stage')
    a = p.parse_args(argv)
    src, dst = a.src.resolve(), a.dst.resolve()
    manifest = stages(src)
    drop = [s for s in STAGES if getattr(a, s) == 'False' and manifest[s]['removable']]
    for s in STAGES:
        if getattr(a, s) == 'False' and s not in drop:
            print(f'the {s} stage is kept: it cannot be removed yet ({" ".join(manifest[s]["why"].split())})')
    files = [f for f in template_files(src) if (dst / f).is_file()]
    gone = [f for s in drop for f in manifest[s]['files']]
    removed = [f for f in files if any(fnmatch.fnmatch(f, g) for g in gone)]
    for f in removed:
        (dst / f).unlink()
        files.remove(f)
        for d in (dst / f).parents:  # a folder the stage alone had (deploy/annotate/routes/) goes with it
            if d == dst or any(d.iterdir()):
                break
            d.rmdir()
    subs = subcommands((src / 'README.md').read_text())
    moved = []
    for f in files:
        new = f if not f.startswith(f'{OLD}/') else f'{a.package}/' + f.removeprefix(f'{OLD}/')
        if new != f:
            (dst / new).parent.mkdir(parents=True, exist_ok=True)
            (dst / f).replace(dst / new)
        moved.append(new)
    if a.package != OLD and (dst / OLD).is_dir():
        leftovers = [q for q in (dst / OLD).rglob('*') if q.is_file()]
        assert not leftovers, f'files of the team left in {OLD}/ (move them into {a.package}/): {leftovers[:5]}'
        shutil.rmtree(dst / OLD)
    for f in moved:
        path = dst / f
        try:
            text = path.read_text(encoding='utf-8')
        except UnicodeDecodeError:
            continue  # a binary file (an image, a font): no names in it
        new = drop_cells(text, drop) if f.endswith('.ipynb') else drop_lines(text, drop)
        new = rename_text(new, a, subs)
        if f == f'{a.package}/_modidx.py':
            new = modidx_layout(new)
        elif f == 'settings.ini':
            new = set_task(new, f'{a.package}.skeleton' if a.task == 'skeleton' else a.task)
        elif f == 'Makefile' and a.task == 'skeleton':
            new = skeleton_nbtest(new, a.prefix)
        elif f == 'README.md':
            new = readme_head(new, a)
        if new != text:
            path.write_text(new, encoding='utf-8')
    tidied = tidy(dst, moved)
    print(
        f'renamed {len(moved)} files: package {a.package}, command {a.command}, settings prefix {a.prefix}_'
        + (f'; without {", ".join(drop)} ({len(removed)} files removed)' * bool(drop))
        + ('; tidied' * tidied)
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
