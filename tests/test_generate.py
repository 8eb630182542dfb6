"""A team's project generated from this repository by copier, and updated to a later template version (issue 22).

The fast tier generates one project under other names (project "Acme Vision": package acme_vision, command acme),
without the optional crawler and queue stages, and runs, in it, its sync and lint checks, the notebooks next to the
removed stages, its CLI's help, its app and a short pipeline through its CLI; and one with the empty task skeleton and
without the annotation stage, whose files and command it checks are gone, in sync and lint clean. The generated
package is not installed: PYTHONPATH points at the project, and this environment's python runs it. The full tier
generates from a tagged copy of this repository, commits a team's change, and updates to a later tag: a clean case
and a conflicting one. docs/guide/template.md describes the mechanism.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytest.importorskip(
    'copier', reason='copier is not installed: `make install` installs it with the dev extra (pyproject.toml)'
)

BIN = Path(sys.executable).parent
NAMES = dict(project_name='Acme Vision', command='acme')  # package acme_vision and prefix ACME_VISION are derived
GIT_ENV = dict(
    GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@example.invalid', GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@x.invalid'
)


def run(cmd, cwd, env=None, ok=True, timeout=600):
    "Run a command; fail the test with its output when it fails and `ok`."
    r = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert not ok or r.returncode == 0, f'{cmd} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r


def copier(*args, cwd=ROOT):
    "copier, as this environment has it (so its tasks find this environment's ruff and nbdev)."
    return run([sys.executable, '-m', 'copier', *args], cwd)


def generate(src, dst, ref='HEAD', **answers):
    "A project generated from `src` at `ref` with NAMES (and other `answers`), committed to git as a team would."
    data = [a for k, v in {**NAMES, **answers}.items() for a in ('-d', f'{k}={v}')]
    copier('copy', '--trust', '--defaults', '--quiet', '--vcs-ref', ref, *data, src, dst)
    run(['git', 'init', '-q', '-b', 'main'], dst)
    run(['git', 'add', '-A'], dst)
    run(['git', 'commit', '-qm', 'Generated'], dst)
    return dst


def in_project(dst, *cmd, ok=True, timeout=600, env=None):
    "A command run in the generated project with its package importable (and `env`)."
    return run(cmd, dst, env={'PYTHONPATH': str(dst), **(env or {})}, ok=ok, timeout=timeout)


def cli(dst, *args, ok=True):
    "The generated project's command (its console script is not installed here)."
    return in_project(
        dst, sys.executable, '-c', 'import sys; from acme_vision.cli import main; sys.exit(main())', *args, ok=ok
    )


def synced(dst):
    "sha256 of the files that nbdev-export and nbdev-clean may rewrite (the Makefile's sync check)."
    files = sorted(p for d in ('nbs', 'acme_vision') for p in (dst / d).rglob('*') if p.suffix in ('.py', '.ipynb'))
    return {str(p.relative_to(dst)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def in_sync_and_lint_clean(dst):
    "The generated project's sync check (nbdev-export and nbdev-clean change nothing) and its lint."
    before = synced(dst)
    in_project(dst, BIN / 'nbdev-export')
    in_project(dst, BIN / 'nbdev-clean')
    assert synced(dst) == before, 'nbdev-export/nbdev-clean changed the generated project'
    in_project(dst, BIN / 'ruff', 'check', '.')
    in_project(dst, BIN / 'ruff', 'format', '--check', '.')


def fast_checks(dst, notebooks=(), env=None):
    "The generated project's sync check, its lint, and two of its notebooks (and `notebooks`) as nbdev-test runs them."
    in_sync_and_lint_clean(dst)
    # settings (the prefix, settings.ini) and the CLI (its command name in every usage line)
    for nb in ('nbs/00_settings.ipynb', 'nbs/90_cli.ipynb', *notebooks):
        in_project(dst, BIN / 'nbdev-test', nb, env=env)


@pytest.fixture(scope='module')
def project(tmp_path_factory):
    # another name, another task, and without the optional stages that can be removed (template/stages.toml)
    return generate(ROOT, tmp_path_factory.mktemp('gen') / 'acme', task='wine', crawler='false', queue='false')


def test_generated_project_says_mlproj_only_where_it_came_from(project):
    found = {}
    for p in project.rglob('*'):
        if p.is_file() and '.git' not in p.relative_to(project).parts:
            lines = [i for i, line in enumerate(p.read_bytes().split(b'\n'), 1) if b'mlproj' in line.lower()]
            if lines:
                found[str(p.relative_to(project))] = lines
    # the answers file may say it too: its _src_path is wherever this repository was generated from
    found.pop('.copier-answers.yml', None)
    assert found == {'README.md': [3]}, found
    readme = (project / 'README.md').read_text().split('\n')
    assert readme[0] == '# Acme Vision' and readme[2].startswith('Generated from the [mlproj]'), readme[:3]
    assert not (project / 'mlproj').exists() and (project / 'acme_vision' / 'cli.py').is_file()
    assert not (project / 'copier.yml').exists() and not (project / 'template').exists()
    answers = (project / '.copier-answers.yml').read_text()
    assert 'package: acme_vision' in answers and 'command: acme' in answers and 'task: wine' in answers
    assert '[task]\nname = wine' in ''.join(
        line for line in (project / 'settings.ini').read_text().splitlines(True) if not line.startswith('#')
    )


def test_generated_project_names_its_command_package_and_prefix(project):
    assert 'acme = "acme_vision.cli:main"' in (project / 'pyproject.toml').read_text()
    assert 'lib_path = "acme_vision"' in (project / 'pyproject.toml').read_text()
    assert '`acme train`' in (project / 'README.md').read_text()
    assert '`acme_vision train`' not in (project / 'README.md').read_text()
    assert 'ACME_VISION_<SECTION>_<KEY>' in (project / 'settings.ini').read_text()
    r = cli(project, 'train', '--help')
    assert r.stdout.startswith('usage: acme train'), r.stdout[:200]
    # the settings prefix is the one the code reads
    r = in_project(
        project,
        sys.executable,
        '-c',
        'from acme_vision.settings import load_settings; print(load_settings(env={"ACME_VISION_SERVING_PORT": "9123"})'
        '.serving.port)',
    )
    assert r.stdout.strip() == '9123'


def test_generated_project_is_in_sync_lint_clean_and_its_notebooks_pass(project):
    # the notebooks that lost a stage's cells or commands: the folder import (the crawler's group) and the local rerun
    fast_checks(project, ('nbs/11_collect.ipynb', 'nbs/34_rerun.ipynb'))


STAGE_FILES = {
    'crawler': ['nbs/15_crawl.ipynb', 'acme_vision/crawl.py', 'tests/test_crawl.py', 'bench/data_crawl.py'],
    'queue': [
        *(f'nbs/{nb}.ipynb' for nb in ('41_redis_server', '42_queue', '43_sweeps', '44_workers')),
        *(f'acme_vision/{m}.py' for m in ('redis_server', 'queue', 'sweeps', 'workers')),
        'deploy/routes/jobs.py',
        'tests/test_queue.py',
        'tests/test_queue_rerun.py',
        'docs/guide/queue.md',
        'acme_vision/templates/sweep.html',
    ],
}


def test_a_removed_stage_leaves_no_file_command_route_or_recipe(project, tmp_path):
    assert not [f for files in STAGE_FILES.values() for f in files if (project / f).exists()]
    # what they shared stays: the folder import and the image sniffer, a local rerun, the job runner
    for f in ('acme_vision/collect.py', 'acme_vision/rerun.py', 'acme_vision/jobs.py', 'tests/test_collect.py'):
        assert (project / f).is_file(), f
    commands = set(re.findall(r'(?m)^    ([a-z][a-z-]*) ', cli(project, '--help').stdout))
    assert {'collect', 'rerun', 'train', 'serve'} <= commands, commands
    assert not commands & {'up', 'worker', 'submit', 'jobs', 'sweep'}, commands
    collect = cli(project, 'collect', '--help').stdout
    assert 'folder' in collect and 'crawl' not in collect, collect
    assert '--queue' not in cli(project, 'rerun', '--help').stdout
    assert re.findall(r'(?m)^(\w+):', (project / 'deploy' / 'Procfile').read_text()) == ['web']
    assert 'redis' not in (project / 'deploy' / 'compose.yaml').read_text()
    assert '[The queue]' not in (project / 'README.md').read_text()
    # the app starts (an empty store: no model) and has no /jobs
    code = (
        'import json\n'
        'from fastapi.testclient import TestClient\n'
        'from deploy.app import create_app\n'
        'from acme_vision.settings import load_settings\n'
        'app = create_app(load_settings())\n'
        'with TestClient(app) as c:\n'
        '    print(json.dumps([c.get("/jobs").status_code, c.get("/health").status_code, sorted(app.openapi()["paths"])]))'
    )
    r = run(
        [sys.executable, '-c', code],
        project,
        env={'PYTHONPATH': str(project), 'ACME_VISION_PATHS_STORE': str(tmp_path / 'store')},
    )
    jobs, health, paths = json.loads(r.stdout.splitlines()[-1])
    assert jobs == 404 and health in (200, 503) and '/predict' in paths, r.stdout[-2000:]
    assert not [p for p in paths if p.startswith('/jobs')], paths


def test_generated_project_runs_its_pipeline(project):
    r = cli(project, 'data')
    assert 'dataset version' in r.stdout + r.stderr
    assert '(wine): 178 items' in r.stdout + r.stderr  # the task chosen at generation
    cli(project, 'train', '-q', '-p', 'max_epochs', '15', '-p', 'wandb_mode', 'disabled')
    [run_dir] = (project / 'reports' / 'runs').iterdir()
    metrics = json.loads((run_dir / 'metrics.json').read_text())
    # 15 short epochs on the wine rows: far above chance (1/3)
    assert metrics['val_acc'] > 0.6 and metrics['task'] == 'wine', metrics
    assert (run_dir / 'model.onnx').is_file()


# --- the full tier: copier update from one template version to a later one ---


def template_repo(tmp):
    "A git repository of this repository's files (tracked and new, as they are now) tagged v0.1."
    src = tmp / 'template'
    files = run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], ROOT).stdout.split('\0')
    for f in filter(None, files):
        if (ROOT / f).is_file() and not (ROOT / f).is_symlink():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    run(['git', 'init', '-q', '-b', 'main'], src)
    run(['git', 'add', '-A'], src)
    run(['git', 'commit', '-qm', 'v0.1'], src)
    run(['git', 'tag', 'v0.1'], src)
    return src


def edit(path, old, new):
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def commit(repo, message, tag=None):
    run(['git', 'commit', '-qam', message], repo)
    if tag:
        run(['git', 'tag', tag], repo)


@pytest.fixture(scope='module')
def versions(tmp_path_factory):
    "The template at v0.1, a project generated from it, then the template's v0.2."
    tmp = tmp_path_factory.mktemp('update')
    src = template_repo(tmp)
    project = generate(src, tmp / 'acme', ref='v0.1')
    # v0.2: a settings comment, a line of the package's reports page (a renamed path), a new guide page
    edit(src / 'settings.ini', '# chosen on the validation split', '# chosen (v0.2) on the validation split')
    edit(
        src / 'mlproj' / 'templates' / 'reports_index.html',
        '<title>mlproj runs</title>',
        '<title>mlproj runs, v0.2</title>',
    )
    (src / 'docs' / 'guide' / 'changes.md').write_text(
        '# Changes\n\nv0.2 of `mlproj`: the reports page names its version.\n'
    )
    run(['git', 'add', '-A'], src)
    commit(src, 'v0.2', tag='v0.2')
    return src, project


def update(project):
    copier('update', '--trust', '--defaults', '--quiet', '--vcs-ref', 'v0.2', cwd=project)
    return run(['git', 'status', '--porcelain'], project).stdout


@pytest.mark.full
def test_update_brings_template_changes_and_keeps_the_teams(versions, tmp_path):
    src, generated = versions
    project = tmp_path / 'acme'
    shutil.copytree(generated, project, symlinks=True)
    # the team's change: lines the template does not touch (nor their neighbours: git's merge takes adjacent changes
    # as one conflict)
    edit(project / 'settings.ini', 'port = 8000', 'port = 9000')
    commit(project, 'Team: serve on port 9000')
    status = update(project)
    assert sorted(line[3:] for line in status.splitlines()) == [
        '.copier-answers.yml',
        'README.md',  # the line saying which template version the project came from
        'acme_vision/templates/reports_index.html',
        'docs/guide/changes.md',
        'settings.ini',
    ], status
    settings = (project / 'settings.ini').read_text()
    assert 'port = 9000' in settings and '# chosen (v0.2) on the validation split' in settings
    assert (
        '<title>acme_vision runs, v0.2</title>'
        in (project / 'acme_vision' / 'templates' / 'reports_index.html').read_text()
    )
    assert (project / 'docs' / 'guide' / 'changes.md').read_text().startswith('# Changes\n\nv0.2 of `acme_vision`')
    assert not (project / 'mlproj').exists()
    answers = (project / '.copier-answers.yml').read_text()
    assert '_commit: v0.2' in answers and 'package: acme_vision' in answers and 'command: acme' in answers
    assert 'template at v0.2 (' in (project / 'README.md').read_text().split('\n')[2]
    assert not list(project.rglob('*.rej')) and '<<<<<<<' not in settings
    fast_checks(project)


@pytest.mark.full
def test_update_shows_a_conflict_where_the_team_changed_the_same_lines(versions, tmp_path):
    src, generated = versions
    project = tmp_path / 'acme'
    shutil.copytree(generated, project, symlinks=True)
    edit(project / 'settings.ini', '# chosen on the validation split', '# chosen by the team on the validation split')
    commit(project, 'Team: its own comment')
    status = update(project)
    settings = (project / 'settings.ini').read_text()
    # copier's inline conflict: git's markers around both sides, and the file unmerged in git's index
    assert re.search(
        r'<<<<<<< before updating\n# chosen by the team on the validation split.*\n=======\n'
        r'# chosen \(v0\.2\) on the validation split.*\n>>>>>>> after updating',
        settings,
    ), settings[:3000]
    assert 'UU settings.ini' in status or 'AA settings.ini' in status, status
    # the rest of the update landed
    assert (
        '<title>acme_vision runs, v0.2</title>'
        in (project / 'acme_vision' / 'templates' / 'reports_index.html').read_text()
    )
    assert '_commit: v0.2' in (project / '.copier-answers.yml').read_text()


# --- the empty task skeleton, and the optional stages' answers ---


@pytest.fixture(scope='module')
def skeleton(tmp_path_factory):
    "A project generated with the empty task skeleton and without the annotation stage (the other fixture keeps it)."
    return generate(ROOT, tmp_path_factory.mktemp('skel') / 'acme', task='skeleton', annotation='false')


def test_skeleton_project_stops_saying_what_to_fill_in(skeleton):
    settings = (skeleton / 'settings.ini').read_text()
    assert '\nname = acme_vision.skeleton\n' in settings, settings[:1500]
    assert (skeleton / 'acme_vision' / 'skeleton.py').is_file() and (skeleton / 'nbs' / '27_skeleton.ipynb').is_file()
    # the notebooks' examples run on a working task until the team's is filled in
    assert '\tACME_VISION_TASK_NAME=digits $(BIN)/nbdev-test\n' in (skeleton / 'Makefile').read_text()
    r = cli(skeleton, 'demo', ok=False)
    assert r.returncode == 1 and r.stdout == '', (r.stdout, r.stderr)
    assert r.stderr == (
        'acme: error: task acme_vision.skeleton: `classes` must name at least 2 distinct classes, got []\n'
    ), r.stderr
    r = cli(skeleton, 'tasks')
    assert '* acme_vision.skeleton: cannot be used: ' in r.stdout, r.stdout


ANNOTATION_FILES = [
    *(f'nbs/{nb}.ipynb' for nb in ('17_annotate', '18_agreement', '40_suggest')),
    *(f'acme_vision/{m}.py' for m in ('annotate', 'agreement', 'suggest')),
    'deploy/annotate',
    'tests/test_annotate.py',
    'tests/test_annotate_browser.py',
    'bench/annotate_writes.py',
    'docs/guide/annotation.md',
]


def test_the_annotation_stage_removed_leaves_the_database_and_a_project_in_sync_and_lint_clean(skeleton):
    assert 'annotation: false' in (skeleton / '.copier-answers.yml').read_text()
    assert not [f for f in ANNOTATION_FILES if (skeleton / f).exists()]
    # the database stays (the scoring page keeps its results in it), as do the stages answered yes by default
    for f in ('acme_vision/db.py', 'acme_vision/score.py', 'acme_vision/queue.py', 'acme_vision/crawl.py'):
        assert (skeleton / f).is_file(), f
    commands = set(re.findall(r'(?m)^    ([a-z][a-z-]*) ', cli(skeleton, '--help').stdout))
    assert {'collect', 'train', 'serve', 'submit'} <= commands and 'annotate' not in commands, commands
    assert 'suggest' not in (skeleton / 'deploy' / 'routes' / 'predict.py').read_text()
    assert 'annotation.md' not in (skeleton / 'docs' / 'guide' / 'settings.md').read_text()
    in_sync_and_lint_clean(skeleton)


@pytest.mark.full
def test_skeleton_project_is_in_sync_lint_clean_and_its_notebooks_pass(skeleton):
    # as its Makefile runs them: the library's examples on the digits (the skeleton has nothing to run yet)
    digits = {'ACME_VISION_TASK_NAME': 'digits'}
    fast_checks(skeleton, env=digits)
    # the skeleton's own notebook: its examples check every part's message
    in_project(skeleton, BIN / 'nbdev-test', 'nbs/27_skeleton.ipynb', env=digits)


def test_rename_drops_a_stages_marked_lines_and_cells():
    sys.path.insert(0, str(ROOT / 'template'))
    import rename

    text = 'a\nb  # only-with: queue\nc\n# begin-only-with: crawler\nd\n# end-only-with: crawler\ne\n'
    assert rename.drop_lines(text, ['queue', 'crawler']) == 'a\nc\ne\n'
    assert rename.drop_lines(text, ['annotation']) == text
    nb = {
        'cells': [
            {'cell_type': 'code', 'source': ['#| export\n', '# cell-only-with: queue\n', 'x = 1']},
            {'cell_type': 'code', 'source': ['y = 1\n', 'z = 2  # only-with: queue']},
        ]
    }
    out = json.loads(rename.drop_cells(json.dumps(nb), ['queue']))
    assert [c['source'] for c in out['cells']] == [['y = 1\n']]
    manifest = rename.stages(ROOT)
    assert set(manifest) == {'crawler', 'annotation', 'queue'}
    assert all(s['removable'] or s['why'] for s in manifest.values())
