"""`mpi_reshard verify`: a published destination verifies; each kind of
tampering is caught and named, with exit code 3."""
import os
import shutil
import subprocess

import pytest

from conftest import MPI_ENV, binary, run_reshard
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

OLD = "rows:block=40"
NEW = "rows:hash=jump,shards=6"


@pytest.fixture
def published(tmp_path):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(300, 90, 3000, seed=21), Scheme.parse(OLD), src)
    dst = str(tmp_path / "dst" / "part_{i}.npz")
    run = run_reshard(src, OLD, dst, NEW, ranks=2)
    assert run.returncode == 0, run.stderr
    return tmp_path, dst


def verify(dst, *extra, ranks=None):
    cmd = [binary(), "verify", "--dst", dst, *extra]
    if ranks:
        cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **MPI_ENV), timeout=300)
    problems = [line for line in proc.stderr.splitlines() if line.startswith("mpi_reshard verify:")]
    return proc.returncode, proc.stdout, problems


@pytest.mark.parametrize("ranks", [None, 1, 3])
def test_clean_destination_verifies(published, ranks):
    _, dst = published
    code, out, problems = verify(dst, "--against-src", ranks=ranks)
    assert code == 0, problems
    assert "verified 6 shards" in out and "equal to the source" in out


def test_deleted_shard(published):
    tmp, dst = published
    os.remove(dst.format(i=4))
    code, _, problems = verify(dst)
    assert code == 3
    assert any(p.endswith(f"missing shard {dst.format(i=4)}") for p in problems), problems


def test_flipped_byte(published):
    tmp, dst = published
    path = dst.format(i=2)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    code, _, problems = verify(dst, ranks=2)
    assert code == 3
    assert any(f"altered shard {path}" in p for p in problems), problems


def test_extra_file(published):
    tmp, dst = published
    shutil.copy(dst.format(i=0), dst.format(i=6))
    code, _, problems = verify(dst)
    assert code == 3
    assert any(f"extra shard file {dst.format(i=6)}" in p for p in problems), problems


def test_truncated_shard(published):
    tmp, dst = published
    path = dst.format(i=1)
    size = os.path.getsize(path)
    os.truncate(path, size - 7)
    code, _, problems = verify(dst, ranks=3)
    assert code == 3
    assert any(f"truncated shard {path}: {size - 7} bytes, manifest says {size}" in p for p in problems), problems


def test_unpublished_destination(published):
    tmp, dst = published
    os.remove(tmp / "dst" / "_SUCCESS")
    code, _, problems = verify(dst)
    assert code == 3
    assert any("not published" in p for p in problems), problems


def test_changed_source_with_against_src(published):
    tmp, dst = published
    write_sharded(skewed_matrix(300, 90, 3000, seed=22), Scheme.parse(OLD), str(tmp / "src" / "shard_{i}.npz"))
    code, _, problems = verify(dst)
    assert code == 0, "the destination itself is intact"
    code, _, problems = verify(dst, "--against-src")
    assert code == 3
    assert any("now has fingerprint" in p for p in problems), problems


@pytest.mark.parametrize("ranks", [None, 3])
def test_a_copied_dataset_verifies_where_it_now_is(published, ranks):
    # `cp -r` of a published destination, the original then removed so that
    # nothing can be read from the old place by mistake.
    tmp, dst = published
    shutil.copytree(tmp / "dst", tmp / "moved")
    shutil.rmtree(tmp / "dst")
    moved = str(tmp / "moved" / "part_{i}.npz")
    code, out, problems = verify(moved, "--against-src", ranks=ranks)
    assert code == 0, problems
    assert "verified 6 shards" in out and "equal to the source" in out


def test_tampering_in_a_copy_names_the_copy(published):
    tmp, dst = published
    shutil.copytree(tmp / "dst", tmp / "copy")
    moved = str(tmp / "copy" / "part_{i}.npz")
    os.remove(moved.format(i=3))
    shutil.copy(moved.format(i=0), moved.format(i=6))
    code, _, problems = verify(moved)
    assert code == 3
    assert any(p.endswith(f"missing shard {moved.format(i=3)}") for p in problems), problems
    assert any(f"extra shard file {moved.format(i=6)}" in p for p in problems), problems
    assert verify(dst)[0] == 0, "the original is untouched"
