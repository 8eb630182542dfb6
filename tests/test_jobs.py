"""Job notebooks run through real papermill kernels."""
import json
import shutil
import subprocess

import nbformat
import pytest

from conftest import ROOT
from mlproj.data import benchmark_version
from mlproj.jobs import JobFailed, find_run, read_run, run_job

JOBS = sorted((ROOT / 'nbs' / 'jobs').glob('*.ipynb'))


@pytest.mark.parametrize('nb', JOBS, ids=lambda p: p.stem)
def test_job_notebook_keeps_parameters_tag_through_nbdev_clean(nb, tmp_path):
    copy = tmp_path / nb.name
    shutil.copy(nb, copy)
    subprocess.run([str(ROOT / '.venv/bin/nbdev-clean'), '--fname', str(copy)], check=True, cwd=ROOT)
    tagged = [c for c in nbformat.read(copy, as_version=4).cells if 'parameters' in c.metadata.get('tags', [])]
    assert len(tagged) == 1


def test_train_job_honours_parameters(settings):
    vid = benchmark_version(settings)
    runs = [run_job(settings, 'train', dict(dataset_version=vid, max_epochs=n, limit_train_batches=2, wandb_mode='disabled'),
                    progress=False) for n in (1, 2)]
    assert [read_run(r)['metrics']['epochs'] for r in runs] == [1, 2]
    info = read_run(runs[1])
    assert info['state'] == 'done' and info['parameters']['max_epochs'] == 2
    assert set(info['code_version']) == {'commit', 'dirty'}
    assert info['metrics']['dataset_version'] == vid
    assert {'train.ipynb', 'train.html', 'metrics.json', 'run.json', 'model.onnx', 'model.safetensors'} <= {p.name for p in runs[1].iterdir()}
    # the executed notebook records the parameters papermill injected
    nb = nbformat.read(runs[1] / 'train.ipynb', as_version=4)
    assert nb.metadata.papermill.parameters['max_epochs'] == 2
    assert find_run(settings, job='train') == runs[1]
    assert runs[1].name in (settings.reports_dir / 'index.html').read_text()


def test_failing_job_leaves_its_notebook_with_the_error(settings):
    with pytest.raises(JobFailed, match='no dataset version') as e:
        run_job(settings, 'train', dict(dataset_version='0000000000000000', wandb_mode='disabled'), progress=False)
    run = e.value.run_dir
    info = json.loads((run / 'run.json').read_text())
    assert info['state'] == 'failed' and 'KeyError' in info['error']
    nb = nbformat.read(e.value.notebook, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
    assert errors and errors[0].ename == 'KeyError'
    assert (run / 'train.html').is_file()
    with pytest.raises(FileNotFoundError, match='no finished train run'):
        find_run(settings, job='train')


def test_evaluate_job_reports_model_and_baseline(trained, tmp_path):
    from conftest import make_settings
    s, train_dir, _ = trained
    # a reports folder of its own, holding the fixture's training run as if a job had made it
    s2 = make_settings(tmp_path, MLPROJ_PATHS_STORE=s.store_url)
    dst = s2.reports_dir / 'runs' / '20260101-000000-train-abcdef'
    shutil.copytree(train_dir, dst)
    (dst / 'run.json').write_text(json.dumps(dict(run_id=dst.name, job='train', state='done', parameters={})))
    run = run_job(s2, 'evaluate', {}, progress=False)
    m = read_run(run)['metrics']
    assert m['train_run'] == dst.name and m['split'] == 'test'
    assert m['model']['accuracy'] > 0.9 > 0.2 > m['baseline']['accuracy']
    assert m['acceptance']['passed'] is True
    assert 'PASS' in (run / 'evaluate.html').read_text()
