"""Fixtures for the end-to-end tests: they run the real mpi_reshard binary
under mpirun on shards written by real scipy."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def binary() -> str:
    path = os.environ.get("RESHARD_BIN", str(ROOT / "build" / "bin" / "mpi_reshard"))
    if not os.path.exists(path):
        pytest.exit(f"mpi_reshard not built at {path}; run scripts/test.sh", returncode=1)
    return path


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def error_lines(self):
        """The program's own one-line errors (mpirun adds its own banner)."""
        return [line for line in self.stderr.splitlines() if line.startswith("mpi_reshard:")]


def run_reshard(src, old, dst, new, *, ranks=2, extra=(), env=None, timeout=300) -> Run:
    cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", binary(),
           "--src", str(src), "--old-scheme", old, "--dst", str(dst), "--new-scheme", new, *extra]
    full_env = dict(os.environ, **MPI_ENV, **(env or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    return Run(proc)


@pytest.fixture
def reshard():
    return run_reshard


def read_report(path):
    with open(path) as f:
        return json.load(f)
