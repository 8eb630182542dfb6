"""Job notebooks run through real papermill kernels."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT

from mlproj.data import benchmark_version
from mlproj.jobs import JobFailed, find_run, read_run, run_job
from mlproj.settings import to_env

JOBS = sorted((ROOT / 'nbs' / 'jobs').glob('*.ipynb'))


@pytest.mark.parametrize('nb', JOBS, ids=lambda p: p.stem)
def test_job_notebook_keeps_parameters_tag_through_nbdev_clean(nb, tmp_path):
    copy = tmp_path / nb.name
    shutil.copy(nb, copy)
    subprocess.run([str(ROOT / '.venv/bin/nbdev-clean'), '--fname', str(copy)], check=True, cwd=ROOT)
    tagged = [c for c in nbformat.read(copy, as_version=4).cells if 'parameters' in c.metadata.get('tags', [])]
    assert len(tagged) == 1


def assert_reads_as_report(
    page: str,  # a run's HTML report
    run: Path,  # its run folder
    *folders: Path,  # folders of this machine that must not appear in it
):
    "The report shows no code and no prompt, names no folder of the machine, loads nothing, and links to the index."
    assert 'In&nbsp;[' not in page and 'In [' not in page and not re.search(r'class="[^"]*jp-InputPrompt', page)
    assert not re.search(r'class="[^"]*(jp-CodeMirrorEditor|jp-InputArea-editor)', page)  # no code cell's input
    assert 'settings = load_settings()' not in page  # the cells' code stays in the notebook
    text = re.sub(r'data:image/png;base64,[^"]*', '', page)  # a figure's bytes could spell anything
    for d in (*folders, ROOT, Path.home()):
        assert str(d) not in text, f'{d} in the report'
    assert '<script src=' not in page and 'src="http' not in page and 'cdnjs' not in page
    info = read_run(run)
    assert f'<title>{info["job"]} {run.name} : mlproj</title>' in page
    assert '<a href="../../index.html" rel="up">' in page


def _mlproj(settings, *args):
    "Run the real CLI with `settings` in its environment."
    env = {
        'PATH': '/usr/bin:/bin',
        'HOME': str(settings.reports_dir.parent),
        'PYTHONPATH': str(ROOT),
        **to_env(settings),
    }
    return subprocess.run(
        [str(ROOT / '.venv/bin/mlproj'), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def test_train_job_honours_parameters(settings):
    vid = benchmark_version(settings)
    r = _mlproj(
        settings,
        'train',
        '--quiet',
        '-p',
        'max_epochs',
        '1',
        '-p',
        'limit_train_batches',
        '2',
        '-p',
        'wandb_mode',
        'disabled',
    )
    assert r.returncode == 0, r.stderr
    first = find_run(settings, job='train')
    second = run_job(
        settings,
        'train',
        dict(dataset_version=vid, max_epochs=2, limit_train_batches=2, wandb_mode='disabled'),
        progress=False,
    )
    assert [read_run(d)['metrics']['epochs'] for d in (first, second)] == [1, 2]
    info = read_run(first)
    assert (
        info['state'] == 'done'
        and info['parameters']['max_epochs'] == 1
        and info['parameters']['dataset_version'] == vid
    )
    assert {'commit', 'dirty', 'untracked'} <= set(info['code_version']) and info['metrics']['dataset_version'] == vid
    # every parameter's effective value and its source (tests/test_provenance.py checks the rest of the record)
    assert info['sources']['max_epochs'] == '-p' and info['sources']['dataset_version'] == 'benchmark'
    assert (info['seed'], info['sources']['seed']) == (settings.train.seed, 'settings.ini [train]')
    assert {'train.ipynb', 'train.html', 'metrics.json', 'run.json', 'model.onnx', 'model.safetensors'} <= {
        p.name for p in first.iterdir()
    }
    # the executed notebook records the parameters papermill injected
    assert nbformat.read(first / 'train.ipynb', as_version=4).metadata.papermill.parameters['max_epochs'] == 1
    assert find_run(settings, job='train') == second
    assert second.name in (settings.reports_dir / 'index.html').read_text()
    page = (first / 'train.html').read_text()
    assert_reads_as_report(page, first, settings.reports_dir.parent)
    assert '<td>max_epochs</td>' in page and 'config_from_settings(' not in page  # the configuration, not the code


def test_failing_job_exits_nonzero_and_leaves_its_notebook_with_the_error(settings):
    r = _mlproj(
        settings, 'train', '--quiet', '-p', 'dataset_version', '0000000000000000', '-p', 'wandb_mode', 'disabled'
    )
    assert r.returncode == 1 and r.stderr.count('\n') == 1
    assert 'train job failed: KeyError' in r.stderr and 'no dataset version' in r.stderr and 'train.ipynb' in r.stderr
    run = next((settings.reports_dir / 'runs').iterdir())
    info = json.loads((run / 'run.json').read_text())
    assert info['state'] == 'failed' and 'KeyError' in info['error']
    nb = nbformat.read(run / 'train.ipynb', as_version=4)
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
    assert errors and errors[0].ename == 'KeyError'
    page = (run / 'train.html').read_text()
    assert 'stopped with an error: KeyError' in page and 'Traceback' not in page
    assert_reads_as_report(page, run, settings.reports_dir.parent)
    with pytest.raises(FileNotFoundError, match='no finished train run'):
        find_run(settings, job='train')
    with pytest.raises(JobFailed, match='no dataset version'):
        run_job(settings, 'train', dict(dataset_version='0000000000000000', wandb_mode='disabled'), progress=False)


def test_evaluate_job_reports_model_and_baseline(trained, tmp_path):
    from conftest import SHORT_RUN_SERVICE_LIKE, make_settings

    s, train_dir, _ = trained
    # a reports folder of its own, holding the fixture's training run as if a job had made it
    s2 = make_settings(tmp_path, MLPROJ_PATHS_STORE=s.store_url, **SHORT_RUN_SERVICE_LIKE)
    dst = s2.reports_dir / 'runs' / '20260101-000000-train-abcdef'
    shutil.copytree(train_dir, dst)
    (dst / 'run.json').write_text(
        json.dumps(dict(run_id=dst.name, job='train', state='done', parameters={}, report='train.html'))
    )
    (dst / 'train.html').write_text('<title>train</title>')
    run = run_job(s2, 'evaluate', {}, progress=False)
    m = read_run(run)['metrics']
    assert m['train_run'] == dst.name and m['split'] == 'test'
    assert m['model']['accuracy'] > 0.9 > 0.2 > m['baseline']['accuracy']
    assert m['acceptance']['passed'] is True
    assert 0.2 < m['service_like']['accuracy'] <= 1 and m['service_like']['n'] == 60
    page = (run / 'evaluate.html').read_text()
    assert 'PASS' in page
    assert_reads_as_report(page, run, tmp_path)
    assert f'<dt>training run</dt><dd><a href="../{dst.name}/train.html">{dst.name}</a></dd>' in page  # its lineage
    assert 'evaluate_train_run(' not in page and len(re.findall(r'<img [^>]*class="figure"', page)) >= 7
