"""Run states of jobs run in the foreground: Ctrl-C is one line and an `interrupted` run, with no kernel left running."""

import json
import signal
import subprocess
import sys
import time

import nbformat
import psutil
from conftest import ROOT, wait_until
from test_queue import SLEEP_JOB, make_project

from mlproj.settings import to_env

# the command starts with SIGINT at its default, as from a terminal: a shell without job control starts background
# commands (and so this suite, when run as `make test &`) with SIGINT ignored, and Python installs no Ctrl-C handler
# where SIGINT is ignored at its start
SIGINT_AS_FROM_A_TERMINAL = [
    sys.executable,
    '-c',
    'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])',
]


def test_ctrl_c_of_a_job_is_one_line_and_an_interrupted_run(tmp_path):
    settings = make_project(tmp_path)
    nb = nbformat.from_dict(SLEEP_JOB)
    nb.cells[0].source += '\ndataset_version: str = None'
    nbformat.write(nb, tmp_path / 'nbs' / 'jobs' / 'train.ipynb')  # `mlproj train` runs this one in the test's project
    env = {
        'PATH': '/usr/bin:/bin',
        'HOME': str(tmp_path),
        **to_env(settings),
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
    }
    p = subprocess.Popen(
        [
            *SIGINT_AS_FROM_A_TERMINAL,
            str(ROOT / '.venv/bin/mlproj'),
            'train',
            '--quiet',
            '--dataset-version',
            'x',
            '-p',
            'seconds',
            '60',
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def running_kernels():
        assert p.poll() is None, p.communicate()
        kernels = []
        for c in psutil.Process(p.pid).children(recursive=True):
            try:  # a child may be a zombie for a moment (the kernel's launcher)
                if 'ipykernel' in ' '.join(c.cmdline()):
                    kernels.append(c)
            except psutil.Error:
                pass
        return kernels

    kernels = wait_until(running_kernels, 120, 0.2, what='the notebook running in its kernel')
    time.sleep(2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == 'mlproj: interrupted\n', err
    run = next((tmp_path / 'reports' / 'runs').iterdir())
    info = json.loads((run / 'run.json').read_text())
    assert info['state'] == 'interrupted' and info['finished']
    assert not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kernels)
