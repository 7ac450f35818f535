"""Exactly-once across crashes: a rank dies at each named point (and the
whole mpirun is killed at arbitrary moments), the same command is run again,
and the result must equal a clean run byte for byte, with the source
untouched, no temp files, and _SUCCESS published once."""
import json
import os
import re
import signal
import subprocess

import numpy as np
import pytest

from conftest import MPI_ENV, binary, run_reshard
from sparse_reshard.testing import Scheme, canonical_multiset, read_sharded, skewed_matrix, write_sharded

OLD = "rows:block=50"
NEW = "cols:block=20"
SHAPE = (600, 200)
BATCH = ["--manifest-batch", "2"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    src = str(root / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*SHAPE, 8000, seed=12), Scheme.parse(OLD), src)
    clean_dst = root / "clean" / "shard_{i}.npz"
    run = run_reshard(src, OLD, str(clean_dst), NEW, ranks=2, extra=BATCH)
    assert run.returncode == 0, run.stderr
    clean = {n: (root / "clean" / n).read_bytes() for n in os.listdir(root / "clean") if n.startswith("shard_")}
    assert len(clean) == 10
    return root, src, clean


def source_state(root):
    src_dir = root / "src"
    return {n: (os.stat(src_dir / n).st_mtime_ns, (src_dir / n).read_bytes()) for n in sorted(os.listdir(src_dir))}


def check_published(dst_dir, src, clean):
    names = sorted(os.listdir(dst_dir))
    shards = {n: (dst_dir / n).read_bytes() for n in names if n.startswith("shard_")}
    assert shards == clean, "output differs from a clean run"
    assert names.count("_SUCCESS") == 1
    leftovers = [n for n in names + os.listdir(dst_dir / "_reshard") if n.startswith(".")]
    assert leftovers == [], f"temp files left: {leftovers}"
    manifest = json.loads((dst_dir / "_reshard" / "manifest.json").read_text())
    assert manifest["committed"] is True
    got = read_sharded(str(dst_dir / "shard_{i}.npz"), Scheme.parse(NEW), SHAPE)
    want = read_sharded(src, Scheme.parse(OLD), SHAPE)
    assert np.array_equal(canonical_multiset(*got), canonical_multiset(*want)), "lost or duplicated entries"


# (point, ranks that pass it): rank 0 alone updates the manifest and publishes.
POINTS = [
    ("after-plan", (0, 1)),
    ("after-manifest", (0, 1)),
    ("after-read", (0, 1)),
    ("mid-exchange", (0, 1)),
    ("after-shard-write:after=3", (0, 1)),
    ("before-report:after=2", (0, 1)),
    ("mid-manifest-update:after=3", (0,)),
    ("before-publish", (0,)),
]
CASES = [(point, rank) for point, ranks in POINTS for rank in ranks]


@pytest.mark.parametrize("point,rank", CASES, ids=[f"{p}-rank{r}" for p, r in CASES])
def test_crash_then_rerun_finishes_exactly_once(source, point, rank):
    root, src, clean = source
    dst_dir = root / f"dst-{point.replace(':', '-')}-r{rank}"
    dst = str(dst_dir / "shard_{i}.npz")
    before = source_state(root)
    name, _, rest = point.partition(":")
    fault = f"{name}:rank={rank}" + (f":{rest}" if rest else "")
    crashed = run_reshard(src, OLD, dst, NEW, ranks=2, extra=BATCH, env={"RESHARD_FAULT": fault})
    assert crashed.returncode != 0, f"the fault {fault} did not fire"
    assert f"fault injected at {name}" in crashed.stderr
    assert not (dst_dir / "_SUCCESS").exists(), "published after a crash"
    # The resubmitted job may get another number of nodes.
    report = root / f"report-{name}-{rank}.json"
    rerun = run_reshard(src, OLD, dst, NEW, ranks=3 if rank else 2, extra=BATCH + ["--report", str(report)])
    assert rerun.returncode == 0, rerun.stderr
    check_published(dst_dir, src, clean)
    assert source_state(root) == before, "the source changed"
    outcome = json.loads(report.read_text())
    # Printed for the record (pytest -s): what the rerun kept and redid.
    print(f"{fault}: resumed={outcome['resumed']} kept={outcome['destination_shards_kept']} "
          f"written={outcome['totals']['destination_shards_written']} "
          f"sources_read={outcome['totals']['source_shards_read']} temp_removed={outcome['temporaries_removed']}")
    if name in ("after-shard-write", "before-report", "mid-manifest-update", "before-publish"):
        assert outcome["resumed"] is True
    if name == "before-publish":
        assert outcome["destination_shards_kept"] == 10 and outcome["totals"]["destination_shards_written"] == 0
    if name == "mid-manifest-update":
        assert outcome["temporaries_removed"] >= 1


def test_rerun_of_published_job_is_a_no_op(source):
    root, src, clean = source
    dst = str(root / "noop" / "shard_{i}.npz")
    assert run_reshard(src, OLD, dst, NEW, ranks=2).returncode == 0
    stamp = os.stat(root / "noop" / "_SUCCESS").st_mtime_ns
    again = run_reshard(src, OLD, dst, NEW, ranks=3)
    assert again.returncode == 0, again.stderr
    assert "already published" in again.stdout
    assert os.stat(root / "noop" / "_SUCCESS").st_mtime_ns == stamp


def test_a_manifest_lost_after_publish_is_a_warning_and_a_rerun_commits_it(source, tmp_path):
    # The disk fills between _SUCCESS and the manifest's final write: the
    # dataset is published, so the job succeeded; the uncommitted manifest
    # (its journal segments still beside it) is finished by the next run.
    root, src, clean = source
    dst_dir = tmp_path / "full"
    dst = str(dst_dir / "shard_{i}.npz")
    report = tmp_path / "report.json"
    run = run_reshard(src, OLD, dst, NEW, ranks=3, extra=[*BATCH, "--report", str(report)],
                      env={"RESHARD_FAULT": "manifest-write-fails-after-publish"})
    assert run.returncode == 0, run.stderr
    assert len(run.error_lines) == 1, run.stderr
    warning = run.error_lines[0]
    assert warning.startswith("mpi_reshard: warning: writing the manifest ") and "No space left" in warning
    assert "published" in warning and "rerunning the same command" in warning
    assert json.loads(report.read_text())["warnings"] == [warning[len("mpi_reshard: warning: "):]]
    assert (dst_dir / "_SUCCESS").exists()
    assert json.loads((dst_dir / "_reshard" / "manifest.json").read_text())["committed"] is False
    assert os.listdir(dst_dir / "_reshard" / "journal"), "the last rounds are only in the journal"
    verified = subprocess.run([binary(), "verify", "--dst", dst], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr

    rerun = run_reshard(src, OLD, dst, NEW, ranks=2)
    assert rerun.returncode == 0, rerun.stderr
    assert "already published" in rerun.stdout and "committed the manifest" in rerun.stdout
    check_published(dst_dir, src, clean)
    assert not (dst_dir / "_reshard" / "journal").exists(), "segments folded into the committed manifest"
    again = run_reshard(src, OLD, dst, NEW, ranks=1)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr


def test_changed_source_is_refused_then_restart(source, tmp_path):
    root, _, _ = source
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*SHAPE, 3000, seed=3), Scheme.parse(OLD), src)
    dst = str(tmp_path / "dst" / "shard_{i}.npz")
    crashed = run_reshard(src, OLD, dst, NEW, env={"RESHARD_FAULT": "after-shard-write:after=2"})
    assert crashed.returncode != 0
    write_sharded(skewed_matrix(*SHAPE, 3000, seed=4), Scheme.parse(OLD), src)  # someone rewrote the source
    refused = run_reshard(src, OLD, dst, NEW)
    assert refused.returncode == 2, refused.stderr
    assert "changed since" in refused.error_lines[0] and "--restart" in refused.error_lines[0]
    restarted = run_reshard(src, OLD, dst, NEW, extra=["--restart"])
    assert restarted.returncode == 0, restarted.stderr
    got = read_sharded(dst, Scheme.parse(NEW), SHAPE)
    want = read_sharded(src, Scheme.parse(OLD), SHAPE)
    assert np.array_equal(canonical_multiset(*got), canonical_multiset(*want))


def test_resume_reads_only_sources_that_reach_missing_shards(tmp_path):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(1000, 100, 5000, seed=8), Scheme.parse("rows:block=100"), src)
    dst = str(tmp_path / "dst" / "shard_{i}.npz")
    # rows 100 -> rows 250: destination shard k needs sources 2.5k .. 2.5k+2.5.
    crashed = run_reshard(src, "rows:block=100", dst, "rows:block=250", ranks=1,
                          extra=["--manifest-batch", "1"], env={"RESHARD_FAULT": "before-report:after=3"})
    assert crashed.returncode != 0
    report = tmp_path / "r.json"
    rerun = run_reshard(src, "rows:block=100", dst, "rows:block=250", ranks=1, extra=["--report", str(report)])
    assert rerun.returncode == 0, rerun.stderr
    outcome = json.loads(report.read_text())
    assert outcome["destination_shards_kept"] == 2  # shards 0 and 1 were recorded
    # Shards 2 and 3 cover rows 500..999: sources 5..9, plus source 0 for the dtype.
    assert outcome["totals"]["source_shards_read"] == 6


@pytest.fixture(scope="module")
def big_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    src = str(root / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(40000, 4000, 3000000, seed=2), Scheme.parse("rows:block=2000"), src)
    return src


def reached(moment, line):
    """Whether rank 0's progress line marks the moment; "late-writes" is its
    second-to-last shard write (how many it owns depends on the data)."""
    if moment != "late-writes":
        return moment in line
    m = re.search(r"wrote (\d+)/(\d+) ", line)
    return bool(m) and int(m.group(2)) >= 4 and int(m.group(1)) == int(m.group(2)) - 1


# Moments to kill the whole job at, recognised from rank 0's progress lines:
# while reading, right after the exchange, early and late in the writes.
@pytest.mark.parametrize("moment", ["read 2/", "all-to-all", "wrote 3/", "late-writes"])
def test_kill_whole_mpirun_then_resume(tmp_path, big_source, moment):
    src = big_source
    dst = str(tmp_path / "dst" / "shard_{i}.npz")
    options = ["--manifest-batch", "1", "--compress", "deflate:9"]
    cmd = ["mpirun", "-np", "2", "--oversubscribe", binary(), "--src", src, "--old-scheme", "rows:block=2000",
           "--dst", dst, "--new-scheme", "cols:block=50", *options]
    proc = subprocess.Popen(cmd + ["--progress"], env=dict(os.environ, **MPI_ENV), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = False
    for line in proc.stderr:
        if reached(moment, line):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole job at once, like a lost allocation
            killed = True
            break
    proc.wait(timeout=120)
    assert killed, f"the job ended before reaching '{moment}'"
    assert not (tmp_path / "dst" / "_SUCCESS").exists()
    rerun = run_reshard(src, "rows:block=2000", dst, "cols:block=50", extra=options)
    assert rerun.returncode == 0, rerun.stderr
    dst_dir = tmp_path / "dst"
    assert (dst_dir / "_SUCCESS").exists()
    assert [n for n in os.listdir(dst_dir) if n.startswith(".")] == []
    got = read_sharded(dst, Scheme.parse("cols:block=50"), (40000, 4000))
    want = read_sharded(src, Scheme.parse("rows:block=2000"), (40000, 4000))
    assert np.array_equal(canonical_multiset(*got), canonical_multiset(*want))


def test_readers_see_a_stable_source_and_never_a_half_published_destination(tmp_path, big_source):
    """While the job runs, this process keeps loading every source shard with
    scipy (its fingerprint must never change) and polls the destination: once
    _SUCCESS appears, every shard must be there and complete."""
    from sparse_reshard.testing import fingerprint
    src = big_source
    old = Scheme.parse("rows:block=2000")
    shape = (40000, 4000)
    reference = fingerprint(*read_sharded(src, old, shape))
    dst_dir = tmp_path / "dst"
    dst = str(dst_dir / "shard_{i}.npz")
    cmd = ["mpirun", "-np", "2", "--oversubscribe", binary(), "--src", src, "--old-scheme", "rows:block=2000",
           "--dst", dst, "--new-scheme", "cols:block=50", "--compress", "deflate:9"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, **MPI_ENV), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    source_checks = 0
    published_checks = 0
    for _ in range(10000):  # bounded; each pass takes a fraction of a second
        running = proc.poll() is None
        assert fingerprint(*read_sharded(src, old, shape)) == reference, "the source changed under a reader"
        source_checks += 1
        if (dst_dir / "_SUCCESS").exists():
            got = read_sharded(dst, Scheme.parse("cols:block=50"), shape)
            assert fingerprint(*got) == reference, "_SUCCESS was visible before the dataset was complete"
            published_checks += 1
        if not running:
            break
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert source_checks >= 2 and published_checks >= 1
