"""Several machines' story on one: two `run` workers share a study through a real PostgreSQL server.

The server is Debian's `postgresql` package, started on loopback in a temporary folder for this
test only; results are read back through a real `mlflow server`, as on a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_engine import optuna_state_counts, popen, write_study

PG_BIN = Path("/usr/lib/postgresql")


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(PG_BIN.glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` user the package creates."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture
def postgres():
    pytest.importorskip(
        "psycopg", reason="psycopg (the PostgreSQL driver, in the project's test extra) is not installed"
    )
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    # the server runs as `postgres`, which cannot enter pytest's private (0700) tmp folders
    data = Path(tempfile.mkdtemp(prefix="pgdata-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(_as_postgres([initdb, "-D", str(data), "-U", "postgres", "--auth=trust"]), check=True,
                   capture_output=True)
    options = f"-h 127.0.0.1 -p {port} -k {data}"
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(data / "log"), "start"]),
                   check=True, capture_output=True)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_study_through_postgresql(tmp_path, postgres, mlflow_server):
    work = tmp_path / "work"
    work.mkdir()
    study = write_study(work)
    args = ("run", str(study), "--storage", postgres, "--tracking-uri", mlflow_server, "--no-progress")
    procs = [popen(work, *args) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    finished = [int(re.search(r"this run: (\d+) trials? finished", out)[1]) for out in outputs]  # "1 trial"
    assert sum(finished) == 4, outputs

    import optuna

    trials = optuna.load_study(study_name="tiny", storage=postgres).get_trials()
    assert optuna_state_counts(trials) == {"COMPLETE": 4}
    assert len({t.user_attrs["key"] for t in trials}) == 4  # each point exactly once

    request = urllib.request.Request(
        f"{mlflow_server}/api/2.0/mlflow/runs/search",
        data=json.dumps({"experiment_ids": [_experiment_id(mlflow_server, "tiny")], "max_results": 100}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        runs = json.loads(r.read())["runs"]
    trial_runs = [r for r in runs if {"key": "ablations.role", "value": "trial"} in r["data"]["tags"]]
    assert len(trial_runs) == 4 and {r["info"]["status"] for r in trial_runs} == {"FINISHED"}


def _experiment_id(base: str, name: str) -> str:
    with urllib.request.urlopen(
        f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}", timeout=10
    ) as r:
        return str(json.loads(r.read())["experiment"]["experiment_id"])


_OPEN_AT_ONCE = """
import sys, time
from ablations.engine import EngineOptions, make_storage
url, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # every process opens the fresh database at the same moment
make_storage(url, EngineOptions(storage=url, tracking_uri="unused"))
print("opened")
"""


@pytest.mark.slow
def test_workers_opening_a_fresh_database_at_once_all_succeed(postgres):
    """A SLURM array starts its workers together: table creation must not race (it did, unlocked)."""
    import time

    start = time.time() + 8.0  # after every interpreter has imported torch and optuna
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPEN_AT_ONCE, postgres, str(start)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert all(out.strip().endswith("opened") for out in outputs), outputs


@pytest.mark.slow
def test_racing_claims_on_postgresql_never_take_a_trial_twice(postgres):
    # PostgreSQL needs no lock of ours: Optuna reads the trial FOR UPDATE and the row lock holds
    from tests.test_reliability import claims_race

    claimed = claims_race(postgres, trials=200)
    assert sorted(claimed) == list(range(200)), f"{len(claimed) - len(set(claimed))} double claims"
