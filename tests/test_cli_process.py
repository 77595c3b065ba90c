"""The tests' CLI launcher (``tests.cli_process``) behaves as a fresh ``python -m ablations``: the same
output and exit status, and a process of its own that signals reach."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys

from tests.cli_process import BASE_ENV, cli, popen
from tests.test_engine import write_study


def fresh(folder, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ablations", *args], cwd=folder, env={**os.environ, **BASE_ENV},
                          capture_output=True, text=True, timeout=300)


def test_forked_and_fresh_cli_print_the_same_and_exit_the_same(tmp_path):
    study = write_study(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(study.read_text().replace("epochs: 2", "epochs: -1"))
    for args in (("plan", str(study)), ("plan", str(bad)), ("no-such-command",)):
        forked, started = cli(tmp_path, *args), fresh(tmp_path, *args)
        assert (forked.returncode, forked.stdout, forked.stderr) == (started.returncode, started.stdout, started.stderr)
    assert cli(tmp_path, "plan", str(bad)).returncode == 2
    assert not (tmp_path / "optuna.db").exists()  # plan writes nothing, in either launcher


def test_a_forked_run_is_its_own_process_and_dies_by_the_signal_sent(tmp_path):
    proc = popen(tmp_path, "run", str(write_study(tmp_path, epochs=200)), "--no-progress")
    assert proc.pid not in (os.getpid(), os.getppid()) and proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL


def test_a_run_whose_output_is_never_read_leaves_no_scratch_folder(tmp_path):
    proc = popen(tmp_path, "no-such-command")
    scratch = proc._scratch  # the launcher's own folder for the run's stdout and stderr
    assert proc.wait(60) == 2 and scratch.is_dir()
    del proc
    gc.collect()
    assert not scratch.exists()
