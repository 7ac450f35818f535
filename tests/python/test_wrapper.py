"""The Python wrapper: ShardingSpec, reshuffle() with progress, errors,
interruption, helpers, and an offline pip install."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import MPI_ENV, ROOT, binary, run_reshard
from sparse_reshard import ReshardError, ShardingSpec, is_published, load_matrix, read_report, reshuffle
from sparse_reshard.testing import Scheme, canonical_multiset, read_sharded, skewed_matrix, write_sharded


@pytest.fixture(autouse=True)
def _binary_and_mpi(monkeypatch):
    monkeypatch.setenv("RESHARD_BIN", binary())
    for key, value in MPI_ENV.items():
        monkeypatch.setenv(key, value)


def entries(pattern, scheme_text, shape):
    return canonical_multiset(*read_sharded(pattern, Scheme.parse(scheme_text), shape))


# ---- ShardingSpec ----

def test_spec_constructors_text_json_and_repr():
    spec = ShardingSpec.row_blocks(250_000, num_workers=8)
    assert spec.to_cli() == "rows:block=250000,workers=8"
    assert ShardingSpec.from_cli(spec.to_cli()) == spec
    assert ShardingSpec.from_json(spec.to_json()) == spec
    hashed = ShardingSpec.hashed("rows", "jump", num_shards=17, seed=3)
    assert repr(hashed) == "ShardingSpec('rows:hash=jump,shards=17,seed=3')"
    grid = ShardingSpec.grid(100, 50, shape=(1000, 500), layout="csc")
    assert ShardingSpec.from_cli(grid.to_cli()) == grid
    assert ShardingSpec.col_blocks(7).block_cols == 7
    with pytest.raises(Exception):
        spec.block_rows = 3  # frozen


@pytest.mark.parametrize("kwargs,message", [
    (dict(axis="rows", block_rows=0), "block_rows >= 1"),
    (dict(axis="diagonal", block_rows=3), "axis must be one of"),
    (dict(axis="rows", hash="md5", num_shards=3), "hash must be one of"),
    (dict(axis="rows", hash="jump", num_shards=0), "num_shards >= 1"),
    (dict(axis="grid", hash="mix", num_shards=2), "grid schemes take block sizes"),
    (dict(axis="rows", block_rows=5, layout="coo"), "layout"),
    (dict(axis="rows", block_rows=5, shape=(1, 2, 3)), "shape"),
    (dict(axis="cols", block_cols=2.5), "integer"),
])
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShardingSpec(**kwargs)


@pytest.mark.parametrize("text,message", [
    ("rows:block=10,block=20", "'block' is given more than once"),
    ("rows:block=10,workers=0", "workers must be >= 1"),
])
def test_spec_text_refuses_what_the_cli_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        ShardingSpec.from_cli(text)


def test_spec_json_is_what_the_cli_reads(tmp_path):
    src = str(tmp_path / "src" / "s_{i}.npz")
    write_sharded(skewed_matrix(90, 40, 500, seed=1), Scheme.parse("rows:block=30"), src)
    old = tmp_path / "old.json"
    new = tmp_path / "new.json"
    old.write_text(ShardingSpec.row_blocks(30).to_json())
    new.write_text(ShardingSpec.hashed("cols", "rendezvous", num_shards=3, layout="csc").to_json())
    run = run_reshard(src, f"@{old}", str(tmp_path / "dst" / "d_{i}.npz"), f"@{new}", ranks=1)
    assert run.returncode == 0, run.stderr
    assert np.array_equal(entries(src, "rows:block=30", (90, 40)),
                          entries(str(tmp_path / "dst" / "d_{i}.npz"), "cols:hash=rendezvous,shards=3", (90, 40)))


# ---- reshuffle ----

@pytest.mark.parametrize("old,new", [
    (ShardingSpec.row_blocks(40), ShardingSpec.col_blocks(25, num_workers=3)),
    (ShardingSpec.hashed("rows", "jump", num_shards=5), ShardingSpec.hashed("rows", "jump", num_shards=6)),
])
def test_reshuffle_with_progress(tmp_path, old, new):
    shape = (400, 150)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    dst = str(tmp_path / "dst" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*shape, 4000, seed=2), Scheme.parse(old.to_cli()), src)
    seen = []
    caller = threading.get_ident()
    threads = set()

    def record(fraction):
        seen.append(fraction)
        threads.add(threading.get_ident())

    job = reshuffle(src, dst, old, new, progress_cb=record, num_ranks=2)
    assert seen[-1] == 1.0 and seen.count(1.0) == 1
    assert all(0.0 <= f <= 1.0 for f in seen)
    assert seen == sorted(seen), "progress went backwards"
    assert len(set(seen)) >= 4, f"too few progress updates: {seen}"
    assert threads == {caller}, "progress_cb ran on another thread"
    assert is_published(dst)
    assert np.array_equal(entries(src, old.to_cli(), shape), entries(dst, new.to_cli(), shape))
    report = read_report(dst)
    assert report["nnz"] == len(entries(src, old.to_cli(), shape))
    assert job.nnz == report["nnz"] and job.raw == report, "the returned report is the one kept at the destination"
    m = load_matrix(dst, new)
    assert m.shape == shape and m.nnz == report["nnz"]


def test_no_callback_prints_nothing(tmp_path, capfd):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(60, 30, 300, seed=3), Scheme.parse("rows:block=20"), src)
    reshuffle(src, str(tmp_path / "dst" / "s_{i}.npz"), ShardingSpec.row_blocks(20), ShardingSpec.col_blocks(10),
              num_ranks=1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_bad_arguments_raise_before_launch(tmp_path):
    rows = ShardingSpec.row_blocks(10)
    with pytest.raises(ValueError, match="dst_pattern"):
        reshuffle(str(tmp_path / "s_{i}.npz"), str(tmp_path / "out.npz"), rows, rows)
    with pytest.raises(ValueError, match="max_concurrency"):
        reshuffle(str(tmp_path / "s_{i}.npz"), str(tmp_path / "d/s_{i}.npz"), rows, rows, max_concurrency=0)
    with pytest.raises(ValueError, match="ShardingSpec or a scheme string"):
        reshuffle(str(tmp_path / "s_{i}.npz"), str(tmp_path / "d/s_{i}.npz"), 10, rows)
    with pytest.raises(ValueError, match="old_scheme: unknown scheme kind 'row'"):
        reshuffle(str(tmp_path / "s_{i}.npz"), str(tmp_path / "d/s_{i}.npz"), "row:block=10", rows)
    with pytest.raises(ValueError, match="memory_limit"):
        reshuffle(str(tmp_path / "s_{i}.npz"), str(tmp_path / "d/s_{i}.npz"), rows, rows, memory_limit=0)
    with pytest.raises(ValueError, match="threads"):
        reshuffle(str(tmp_path / "s_{i}.npz"), str(tmp_path / "d/s_{i}.npz"), rows, rows, threads=-1)
    assert not (tmp_path / "d").exists()


def test_scheme_strings_keyword_options_and_the_returned_report(tmp_path):
    shape = (90, 40)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    dst = str(tmp_path / "dst" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*shape, 900, seed=4), Scheme.parse("rows:block=30"), src)
    job = reshuffle(src, dst, "rows:block=30", "cols:hash=jump,shards=3", num_ranks=2, compress="none",
                    memory_limit="64MiB", threads=1)
    assert np.array_equal(entries(src, "rows:block=30", shape), entries(dst, "cols:hash=jump,shards=3", shape))
    assert job.shape == shape and job.ranks == 2
    assert job.source_shards == 3 and job.destination_shards == 3
    assert job.nnz == len(entries(src, "rows:block=30", shape))
    assert job.raw["memory"]["limit_bytes"] == 64 << 20, "memory_limit reached the program"
    assert job.raw["threads_per_rank"] == 1, "threads reached the program"
    assert [r.rank for r in job.per_rank] == [0, 1]
    assert sum(r.bytes_written for r in job.per_rank) == job.bytes_written > 0
    # compress="none": every member of an output shard is stored, not deflated.
    import zipfile
    with zipfile.ZipFile(dst.format(i=0)) as z:
        assert {info.compress_type for info in z.infolist()} == {zipfile.ZIP_STORED}

    # A different scheme onto a published destination is refused, then
    # overwrite=True is the keyword the refusal asks for.
    with pytest.raises(ReshardError) as info:
        reshuffle(src, dst, "rows:block=30", "rows:block=45", num_ranks=2)
    assert info.value.exit_code == 2 and "--overwrite" in info.value.message
    again = reshuffle(src, dst, "rows:block=30", "rows:block=45", num_ranks=2, overwrite=True)
    assert again.destination_shards == 2
    assert np.array_equal(entries(src, "rows:block=30", shape), entries(dst, "rows:block=45", shape))


def test_a_refused_job_creates_nothing_at_the_destination(tmp_path):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(60, 30, 300, seed=3), Scheme.parse("rows:block=20"), src)
    dst_dir = tmp_path / "dst"
    with pytest.raises(ReshardError) as info:
        # A wrong block height is found by the program, not the wrapper.
        reshuffle(src, str(dst_dir / "s_{i}.npz"), "rows:block=25", "cols:block=10", num_ranks=2)
    assert info.value.exit_code == 2
    assert not dst_dir.exists(), f"a refused job left {sorted(os.listdir(dst_dir))}"
    # The message and the tail are the program's words, not mpirun's notice.
    assert "mpirun" not in info.value.stderr_tail and "-----" not in info.value.stderr_tail
    assert info.value.message in info.value.stderr_tail


def test_missing_source_raises_reshard_error(tmp_path):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(60, 30, 300, seed=3), Scheme.parse("rows:block=20"), src)
    os.remove(src.format(i=1))
    with pytest.raises(ReshardError) as info:
        reshuffle(src, str(tmp_path / "dst" / "s_{i}.npz"), ShardingSpec.row_blocks(20),
                  ShardingSpec.col_blocks(10), num_ranks=2)
    assert info.value.exit_code == 2
    assert info.value.message == f"missing source shard {src.format(i=1)}"
    assert "missing source shard" in info.value.stderr_tail
    assert "----" not in info.value.stderr_tail and "mpirun" not in info.value.stderr_tail, "launcher banner kept"


def test_ranks_are_not_bound_unless_the_user_binds_them(tmp_path):
    # mpirun binds each of two ranks to one core by default; the wrapper
    # starts them unbound, so the rank that writes a hot shard can deflate
    # on the cores of the ranks that are done. The report says how many
    # CPUs each rank could use and how many threads it took.
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("binding to cores only shows with 2 or more CPUs")
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(90, 40, 900, seed=5), Scheme.parse("rows:block=30"), src)
    free = reshuffle(src, str(tmp_path / "free" / "s_{i}.npz"), "rows:block=30", "cols:block=10", num_ranks=2)
    assert [r["cpus_allowed"] for r in free.raw["per_rank"]] == [cpus, cpus]
    assert free.raw["threads_per_rank"] == max(1, cpus // 2), "the shuffle stages take the rank's share"
    assert free.raw["write_threads_per_rank"] == cpus, "the compressors may use every CPU of the rank"
    assert free.raw["warnings"] == []
    bound = reshuffle(src, str(tmp_path / "bound" / "s_{i}.npz"), "rows:block=30", "cols:block=10", num_ranks=2,
                      mpi_args=["--bind-to", "core"])
    assert [r["cpus_allowed"] for r in bound.raw["per_rank"]] == [1, 1], "the user's --bind-to wins"
    assert bound.raw["threads_per_rank"] == 1 and bound.raw["write_threads_per_rank"] == 1
    # One rank, whose share is the whole node, bound to one core: it says so.
    report = str(tmp_path / "pinned.json")
    done = subprocess.run(["mpirun", "-np", "1", "--bind-to", "core", binary(), "-q", "--src", src,
                           "--old-scheme", "rows:block=30",
                           "--dst", str(tmp_path / "pinned" / "s_{i}.npz"), "--new-scheme", "cols:block=10",
                           "--report", report], capture_output=True, text=True, env=dict(os.environ, **MPI_ENV),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    with open(report) as f:
        pinned = json.load(f)
    assert pinned["per_rank"][0]["cpus_allowed"] == 1 and pinned["write_threads_per_rank"] == 1
    warning = f"1 of 1 rank(s) may run on fewer CPUs than their share of their node (this one may run on 1 of "
    assert any(w.startswith(warning) for w in pinned["warnings"]), pinned["warnings"]
    assert "mpi_reshard: warning: " + warning in done.stderr


def test_mpirun_gets_no_kill_grace_period_unless_the_user_sets_one(tmp_path, monkeypatch):
    # mpirun waited ~2 s before returning a failed job; the wrapper asks it
    # not to. A user's own setting wins.
    import sparse_reshard.runner as runner

    seen = []
    real_popen = subprocess.Popen

    def recording_popen(command, **kwargs):
        seen.append(kwargs["env"].get("OMPI_MCA_odls_base_sigkill_timeout"))
        return real_popen(command, **kwargs)

    monkeypatch.setattr(runner.subprocess, "Popen", recording_popen)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    for setting in (None, "3"):
        if setting:
            monkeypatch.setenv("OMPI_MCA_odls_base_sigkill_timeout", setting)
        with pytest.raises(ReshardError):
            reshuffle(src, str(tmp_path / "dst" / "s_{i}.npz"), "rows:block=20", "cols:block=10", num_ranks=2)
    assert seen == ["0", "3"]


def surviving_ranks(marker):
    """PIDs whose command line mentions `marker` (the unique destination)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "mpi_reshard" in cmdline:
            pids.append(int(pid))
    return pids


def test_interrupt_kills_every_rank_and_a_second_call_completes(tmp_path):
    shape = (40000, 4000)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    dst = str(tmp_path / "dst-interrupted" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*shape, 2000000, seed=4), Scheme.parse("rows:block=2000"), src)
    old, new = ShardingSpec.row_blocks(2000), ShardingSpec.col_blocks(50)

    def interrupt_midway(fraction):
        if fraction > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reshuffle(src, dst, old, new, num_ranks=2, progress_cb=interrupt_midway,
                  extra_args=["--compress", "deflate:9", "--manifest-batch", "1"])
    assert surviving_ranks("dst-interrupted") == []
    assert not is_published(dst)
    seen = []
    reshuffle(src, dst, old, new, num_ranks=2, progress_cb=seen.append,
              extra_args=["--compress", "deflate:9", "--manifest-batch", "1"])
    assert seen[-1] == 1.0 and is_published(dst)
    assert np.array_equal(entries(src, old.to_cli(), shape), entries(dst, new.to_cli(), shape))


def test_offline_pip_install(tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                           str(target), str(ROOT / "python")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = subprocess.run([sys.executable, "-c", "import sparse_reshard, sys; print(sparse_reshard.__file__)"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(target)), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(str(target))
    # Type checkers only read the annotations of a package that ships py.typed.
    assert (target / "sparse_reshard" / "py.typed").is_file()
    assert (target / "sparse_reshard" / "report.py").is_file()


def test_version_is_one_number_for_the_program_and_the_package():
    import re

    import sparse_reshard
    proc = subprocess.run([binary(), "--version"], capture_output=True, text=True, env=dict(os.environ, **MPI_ENV))
    assert proc.returncode == 0, proc.stderr
    cmake_version = re.search(r"project\(sparse_reshard VERSION (\S+)", (ROOT / "CMakeLists.txt").read_text())[1]
    assert proc.stdout == f"mpi_reshard {cmake_version}\n"
    assert sparse_reshard.__version__ == cmake_version


def test_public_api_is_documented_and_typed():
    import typing

    import sparse_reshard
    from sparse_reshard import spec

    for name in ("row_blocks", "col_blocks", "grid", "hashed", "to_cli", "from_cli", "to_json", "from_json"):
        assert (getattr(ShardingSpec, name).__doc__ or "").strip(), f"ShardingSpec.{name} has no docstring"
    for name in sparse_reshard.__all__:
        assert (getattr(sparse_reshard, name).__doc__ or "").strip(), f"sparse_reshard.{name} has no docstring"
    hints = typing.get_type_hints(ShardingSpec)
    assert hints["axis"] == spec.Axis and hints["layout"] == spec.Layout
    assert hints["hash"] == typing.Optional[spec.HashName]
    assert set(typing.get_args(spec.HashName)) == {h for h in spec.HASHES if h}
    assert (ROOT / "python" / "sparse_reshard" / "py.typed").is_file()


def test_cat_prints_one_object_and_names_what_is_missing(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.bin").write_bytes(bytes(range(256)) * 1000)
    ok = subprocess.run([binary(), "cat", str(tmp_path / "d" / "x.bin")], capture_output=True)
    assert ok.returncode == 0 and ok.stdout == bytes(range(256)) * 1000
    missing = subprocess.run([binary(), "cat", str(tmp_path / "d" / "y.bin")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr == f"mpi_reshard cat: no such object: {tmp_path}/d/y.bin\n"
    folder = subprocess.run([binary(), "cat", str(tmp_path / "d")], capture_output=True, text=True)
    assert folder.returncode == 2 and "is a directory" in folder.stderr
    usage = subprocess.run([binary(), "cat"], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: mpi_reshard cat URL")
    assert not is_published(str(tmp_path / "d" / "s_{i}.npz"))


def test_calling_again_on_a_published_destination_returns_a_report(tmp_path):
    # It raised KeyError('shape'): the program's report of an already
    # published job lacked the keys JobReport reads.
    src = str(tmp_path / "src" / "shard_{i}.npz")
    dst = str(tmp_path / "dst" / "s_{i}.npz")
    write_sharded(skewed_matrix(60, 30, 300, seed=3), Scheme.parse("rows:block=20"), src)
    first = reshuffle(src, dst, "rows:block=20", "cols:block=10", num_ranks=2)
    again = reshuffle(src, dst, "rows:block=20", "cols:block=10", num_ranks=3)
    assert not first.already_published and again.already_published
    assert (again.nnz, again.shape, again.source_shards, again.destination_shards, again.ranks) == \
        (first.nnz, first.shape, first.source_shards, first.destination_shards, 3)
    assert again.bytes_written == 0 and again.bytes_read == 0 and again.per_rank == []
    kept = read_report(dst)
    assert "already_published" not in kept and kept == first.raw, "the working run's report is kept"
