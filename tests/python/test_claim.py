"""Two jobs on one destination (issue 11.1): the destination claim lets
exactly one write it. Jobs are started at the same instant, many times, on
POSIX and on the S3 test server (whose front gives PUT If-None-Match: * the
semantics of AWS S3)."""
import json
import os
import socket
import subprocess
import time
import uuid

import pytest

from conftest import MPI_ENV, binary
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

OLD = "rows:block=2000"
SHAPE = (16000, 3000)
TRIES = 20


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("claimsrc")
    src = str(root / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*SHAPE, 400000, seed=7), Scheme.parse(OLD), src)
    return src


def start(src, dst, new, *extra, env=None):
    cmd = ["mpirun", "-np", "1", binary(), "--src", src, "--old-scheme", OLD, "--dst", dst, "--new-scheme", new,
           *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **MPI_ENV, **(env or {})))


def verify(dst, env=None):
    return subprocess.run([binary(), "verify", "--dst", dst], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **MPI_ENV, **(env or {})))


def race(src, dst, env=None):
    """Two jobs that differ in scheme and in compression, started together;
    returns [(returncode, stderr)] in start order."""
    jobs = [start(src, dst, "cols:block=500", "--compress", "none", env=env),
            start(src, dst, "cols:block=700", "--compress", "igzip:1", env=env)]
    out = []
    for job in jobs:
        _, err = job.communicate(timeout=120)
        out.append((job.returncode, err))
    return out


def check_one_winner(results, dst, env=None):
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser_err = next(err for code, err in results if code == 2)
    assert "mpi_reshard:" in loser_err
    check = verify(dst, env)
    assert check.returncode == 0, check.stdout + check.stderr
    return "is claimed by job" in loser_err


def test_racing_jobs_on_posix_one_publishes(source, tmp_path):
    by_claim = 0
    for attempt in range(TRIES):
        dst = str(tmp_path / f"dst{attempt}" / "shard_{i}.npz")
        by_claim += check_one_winner(race(source, dst), dst)
    # Most losers start while the winner runs and meet its claim; the rest
    # start after it published and meet its dataset. Both refusals are exit 2.
    print(f"{by_claim}/{TRIES} refused by the claim")
    assert by_claim >= 1


def test_racing_jobs_on_s3_one_publishes(source, s3):
    by_claim = 0
    for attempt in range(TRIES):
        dst = f"s3://dst/claim-{uuid.uuid4().hex}/shard_{{i}}.npz"
        by_claim += check_one_winner(race(source, dst, env=s3.env()), dst, env=s3.env())
    print(f"{by_claim}/{TRIES} refused by the claim")
    assert by_claim >= 1


def live_claim(job_id="job-still-running", host=None, renewed_ago=0.0):
    pid = os.getpid()
    with open(f"/proc/{pid}/stat") as f:
        process_start = f.read().rsplit(")", 1)[1].split()[19]
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    now = time.time()
    return {"job_id": job_id, "host": host or socket.gethostname(), "boot_id": boot_id, "pid": pid,
            "process_start": process_start, "started_at": now - 100, "renewed_at": now - renewed_ago,
            "released": False, "token": "t"}


def put_claim(dst_dir, holder, generation=0):
    claims = dst_dir / "_reshard" / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    (claims / f"{generation:020d}.json").write_text(json.dumps(holder))


def test_live_claim_refuses_with_exit_2_naming_the_holder(source, tmp_path):
    dst_dir = tmp_path / "held"
    put_claim(dst_dir, live_claim())  # this pytest process plays the running job
    t0 = time.time()
    job = start(source, str(dst_dir / "shard_{i}.npz"), "cols:block=500")
    _, err = job.communicate(timeout=60)
    assert job.returncode == 2, err
    line = next(l for l in err.splitlines() if l.startswith("mpi_reshard:"))
    assert "claimed by job job-still-running" in line and f"pid {os.getpid()}" in line, line
    assert time.time() - t0 < 30
    assert sorted(os.listdir(dst_dir)) == ["_reshard"]
    assert os.listdir(dst_dir / "_reshard" / "claims") == [f"{0:020d}.json"], "nothing else was written"


def test_lapsed_claim_of_another_host_is_taken_over(source, tmp_path):
    dst_dir = tmp_path / "lapsed"
    put_claim(dst_dir, live_claim(host="node-that-died", renewed_ago=20))
    dst = str(dst_dir / "shard_{i}.npz")
    job = start(source, dst, "cols:block=500", "--claim-lease", "10")
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    claims = sorted(os.listdir(dst_dir / "_reshard" / "claims"))
    assert claims == [f"{0:020d}.json", f"{1:020d}.json"]
    mine = json.loads((dst_dir / "_reshard" / "claims" / claims[1]).read_text())
    assert mine["released"] and mine["host"] == socket.gethostname()
    # A lease not yet over keeps the destination closed.
    other = tmp_path / "fresh"
    put_claim(other, live_claim(host="node-alive", renewed_ago=2))
    job = start(source, str(other / "shard_{i}.npz"), "cols:block=500", "--claim-lease", "10")
    _, err = job.communicate(timeout=60)
    assert job.returncode == 2 and "on host node-alive" in err, err


def test_refused_job_leaves_no_claim_behind(source, tmp_path):
    dst_dir = tmp_path / "refused"
    dst = str(dst_dir / "shard_{i}.npz")
    job = start(source, dst, "cols:block=500")
    job.communicate(timeout=120)
    assert job.returncode == 0
    before = sorted(os.listdir(dst_dir / "_reshard" / "claims"))
    job = start(source, dst, "cols:block=700")  # another job: refused for the published dataset
    _, err = job.communicate(timeout=120)
    assert job.returncode == 2 and "--overwrite" in err, err
    assert sorted(os.listdir(dst_dir / "_reshard" / "claims")) == before
