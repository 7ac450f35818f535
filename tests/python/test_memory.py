"""Bounded memory: --memory-limit spills buckets to --scratch-dir and splits
the exchange into waves; the output bytes must not change, nothing may be
left in the scratch directory, and what cannot fit is refused up front.
(Peak RSS against the limit is measured by bench/run.sh, not here.)"""
import filecmp
import os

import pytest
from conftest import read_report
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

OLD = "rows:block=2500"
# Small enough that a 36 MiB limit leaves only a few MiB of working memory
# (the process itself holds ~20 MiB), so 965k entries (29 MiB as entries)
# must spill and move in several waves.
LIMIT = "36MiB"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    src = str(root / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(40000, 3000, 1500000, seed=11), Scheme.parse(OLD), src, compressed=False)
    return src


def shard_files(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".npz"))


def assert_same_shards(a, b):
    names = shard_files(a)
    assert names == shard_files(b)
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, f"differing shards: {mismatch + errors}"


@pytest.mark.parametrize("new", ["rows:hash=mix,shards=24", "grid:block=2500x300"])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_limited_run_spills_and_writes_identical_bytes(tmp_path, reshard, source, new, ranks):
    free = tmp_path / "free" / "shard_{i}.npz"
    run = reshard(source, OLD, free, new, ranks=ranks)
    assert run.returncode == 0, run.stderr
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    limited = tmp_path / "limited" / "shard_{i}.npz"
    report = tmp_path / "r.json"
    run = reshard(source, OLD, limited, new, ranks=ranks,
                  extra=["--memory-limit", LIMIT, "--scratch-dir", str(scratch), "--report", str(report)])
    assert run.returncode == 0, run.stderr
    r = read_report(report)
    assert r["memory"]["limit_bytes"] == 36 << 20
    assert r["totals"]["bytes_spilled"] > 0, "the limit should have forced a spill"
    assert r["exchange_waves"] > 1
    assert_same_shards(free.parent, limited.parent)
    assert os.listdir(scratch) == [], "scratch files must not outlive the job"


def test_scratch_is_empty_after_a_crash_and_the_resume_matches(tmp_path, reshard, source):
    new = "rows:hash=mix,shards=24"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    dst = tmp_path / "dst" / "shard_{i}.npz"
    options = ["--memory-limit", LIMIT, "--scratch-dir", str(scratch), "--manifest-batch", "1"]
    crashed = reshard(source, OLD, dst, new, extra=options, env={"RESHARD_FAULT": "before-report:after=3"})
    assert crashed.returncode != 0
    assert os.listdir(scratch) == [], "a crashed rank's scratch file is gone with it"
    resumed = reshard(source, OLD, dst, new, extra=options)
    assert resumed.returncode == 0, resumed.stderr
    free = tmp_path / "free" / "shard_{i}.npz"
    assert reshard(source, OLD, free, new).returncode == 0
    assert_same_shards(free.parent, dst.parent)


def test_a_destination_shard_larger_than_the_limit_is_refused_by_name(tmp_path, reshard, source):
    # Column block 0 of the skewed matrix holds most of its entries.
    dst = tmp_path / "dst" / "shard_{i}.npz"
    run = reshard(source, OLD, dst, "cols:block=1500", extra=["--memory-limit", LIMIT])
    assert run.returncode == 2, run.stderr
    assert len(run.error_lines) == 1, run.stderr
    line = run.error_lines[0]
    assert "destination shard" in line and "shard_0.npz" in line and "--memory-limit 36.0 MiB" in line
    assert "raise --memory-limit or choose more destination shards" in line
    assert not dst.parent.exists() or os.listdir(dst.parent) == [], "nothing may be written"


def test_a_source_shard_larger_than_the_limit_is_refused_by_name(tmp_path, reshard):
    src = tmp_path / "src" / "shard_{i}.npz"
    write_sharded(skewed_matrix(4000, 3000, 900000, seed=1), Scheme.parse("rows:block=4000"), str(src),
                  compressed=False)
    dst = tmp_path / "dst" / "shard_{i}.npz"
    run = reshard(src, "rows:block=4000", dst, "rows:block=1000", extra=["--memory-limit", LIMIT])
    assert run.returncode == 2, run.stderr
    assert len(run.error_lines) == 1, run.stderr
    assert "source shard" in run.error_lines[0] and "shard_0.npz" in run.error_lines[0]
    assert not dst.parent.exists()


@pytest.mark.parametrize("limit, message", [("lots", "is not a size"), ("12parsecs", "unknown unit"),
                                            ("1MiB", "needs at least")])
def test_bad_memory_limits_exit_2(tmp_path, reshard, source, limit, message):
    dst = tmp_path / "dst" / "shard_{i}.npz"
    run = reshard(source, OLD, dst, "rows:block=5000", extra=["--memory-limit", limit])
    assert run.returncode == 2, run.stderr
    assert len(run.error_lines) == 1 and message in run.error_lines[0], run.stderr
    assert not dst.parent.exists()


def test_an_unusable_scratch_dir_is_refused_naming_it(tmp_path, reshard, source):
    # Found before any work since 003f4d8 (issue 11.5): bad input, exit 2,
    # and the destination untouched, instead of exit 4 once spilling began.
    dst = tmp_path / "dst" / "shard_{i}.npz"
    missing = tmp_path / "no-such-dir"
    run = reshard(source, OLD, dst, "rows:hash=mix,shards=24",
                  extra=["--memory-limit", LIMIT, "--scratch-dir", str(missing)])
    assert run.returncode == 2, run.stderr
    assert len(run.error_lines) == 1 and str(missing) in run.error_lines[0], run.stderr
    assert not dst.parent.exists()
