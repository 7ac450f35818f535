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


S3_SCRIPT = ROOT / "tests" / "s3" / "servers.sh"


class S3Servers:
    """s3rver behind the signature-verifying front (tests/s3/front.js)."""

    def __init__(self, endpoint: str, data_dir: str):
        self.endpoint = endpoint
        self.data_dir = data_dir

    def env(self, **overrides):
        env = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER", "AWS_ENDPOINT_URL": self.endpoint,
               "AWS_REGION": "us-east-1", "RESHARD_S3_BACKOFF_BASE_MS": "20", "RESHARD_S3_BACKOFF_CAP_MS": "200"}
        env.update(overrides)
        return env

    def object_bytes(self, bucket: str, key: str) -> bytes:
        """An object's stored bytes, read from s3rver's own files."""
        with open(os.path.join(self.data_dir, bucket, key + "._S3rver_object"), "rb") as f:
            return f.read()

    def keys(self, bucket: str, prefix: str):
        root = os.path.join(self.data_dir, bucket, prefix)
        if not os.path.isdir(root):
            return []
        return sorted(n[: -len("._S3rver_object")] for n in os.listdir(root) if n.endswith("._S3rver_object"))

    def control(self, path: str, body: bytes = b"") -> bytes:
        import urllib.request
        request = urllib.request.Request(self.endpoint + path, data=body or None, method="POST" if body else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def fault(self, mode=None, match="", count=1, every=1):
        self.control("/__front/fault", json.dumps({"mode": mode, "match": match, "count": count, "every": every}).encode())

    def stats(self):
        return json.loads(self.control("/__front/stats"))


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    endpoint = os.environ.get("RESHARD_TEST_S3_ENDPOINT")
    data_dir = os.environ.get("RESHARD_TEST_S3_DATA")
    if endpoint and data_dir:
        yield S3Servers(endpoint, data_dir)
        return
    work = tmp_path_factory.mktemp("s3servers")
    out = subprocess.run([str(S3_SCRIPT), "start", str(work)], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.fail(f"could not start the S3 test servers: {out.stderr}")
    try:
        yield S3Servers(out.stdout.split()[0], str(work / "data"))
    finally:
        subprocess.run([str(S3_SCRIPT), "stop", str(work)], timeout=60)


def sharded_source(root, scheme, shape, nnz, seed):
    """A skewed matrix written by scipy as `scheme` shards under root/src."""
    from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

    src = str(root / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*shape, nnz, seed=seed), Scheme.parse(scheme), src)
    return src
