"""Bytes that are not UTF-8 (issue 11.2): in a file name beside the shards,
in the source path, in a zip member name and in a manifest. Paths are bytes
on POSIX, so the first two must just work; the last two are bad input. No
case may hang: each ends within 30 s on 2 and 3 ranks, with one clear line."""
import os
import shutil
import subprocess
import time
import zipfile

import pytest

from conftest import MPI_ENV, binary
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

OLD = "rows:block=100"
NEW = "cols:block=70"
BAD = "\udcff\udcfe"  # the bytes 0xFF 0xFE, as Python spells undecodable path bytes


@pytest.fixture(scope="module")
def clean_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("bytes")
    src = root / "src"
    write_sharded(skewed_matrix(400, 200, 5000, seed=3), Scheme.parse(OLD), str(src / "shard_{i}.npz"))
    return src


def run(src_dir, dst_dir, ranks, *extra):
    cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", binary(), "--src", os.path.join(src_dir, "shard_{i}.npz"),
           "--old-scheme", OLD, "--dst", os.path.join(dst_dir, "shard_{i}.npz"), "--new-scheme", NEW, *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, timeout=60, env=dict(os.environ, **MPI_ENV))
    elapsed = time.time() - t0
    assert elapsed < 30, f"took {elapsed:.1f} s"
    lines = [l for l in proc.stderr.decode(errors="replace").splitlines() if l.startswith("mpi_reshard")]
    run.stdout = proc.stdout.decode(errors="replace")
    return proc.returncode, lines


def verify(dst_dir):
    out = subprocess.run([binary(), "verify", "--dst", os.path.join(dst_dir, "shard_{i}.npz")], capture_output=True,
                         env=dict(os.environ, **MPI_ENV), timeout=60)
    return out.returncode


@pytest.mark.parametrize("ranks", [2, 3])
def test_unrelated_non_utf8_file_name_beside_the_shards(clean_source, tmp_path, ranks):
    src = tmp_path / "src"
    shutil.copytree(clean_source, src)
    (src / f"notes{BAD}.txt").write_bytes(b"not a shard")
    code, lines = run(str(src), str(tmp_path / "dst"), ranks)
    assert code == 0, lines
    assert verify(str(tmp_path / "dst")) == 0


@pytest.mark.parametrize("ranks", [2, 3])
def test_non_utf8_source_and_destination_paths(clean_source, tmp_path, ranks):
    src = tmp_path / f"src{BAD}"
    shutil.copytree(clean_source, src)
    dst = tmp_path / f"dst{BAD}"
    code, lines = run(str(src), str(dst), ranks, "--report", str(tmp_path / "report.json"))
    assert code == 0, lines
    assert verify(str(dst)) == 0
    assert sorted(n for n in os.listdir(dst) if n.startswith("shard_")) == [f"shard_{i}.npz" for i in range(3)]
    # A rerun recognises its own published job through the manifest's paths.
    code, lines = run(str(src), str(dst), ranks)
    assert code == 0, lines
    assert "already published" in run.stdout, run.stdout


@pytest.mark.parametrize("ranks", [2, 3])
def test_non_utf8_zip_member_name(clean_source, tmp_path, ranks):
    src = tmp_path / "src"
    shutil.copytree(clean_source, src)
    victim = src / "shard_1.npz"
    with zipfile.ZipFile(victim) as z:
        members = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(victim, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    raw = bytearray(victim.read_bytes())
    # Rename the member "data.npy" to "dat\xff.npy" in place, in both headers.
    assert raw.count(b"data.npy") == 2
    victim.write_bytes(bytes(raw).replace(b"data.npy", b"dat\xff.npy"))
    code, lines = run(str(src), str(tmp_path / "dst"), ranks)
    assert code == 2, lines
    assert len(lines) == 1 and "shard_1.npz" in lines[0], lines
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("ranks", [2, 3])
def test_non_utf8_bytes_in_a_manifest(clean_source, tmp_path, ranks):
    dst = tmp_path / "dst"
    (dst / "_reshard").mkdir(parents=True)
    (dst / "_reshard" / "manifest.json").write_bytes(b'{"format_version": 1, "job_id": "\xff\xfe"}')
    code, lines = run(str(clean_source), str(dst), ranks)
    assert code == 2, lines
    assert len(lines) == 1 and "manifest" in lines[0] and "--restart" in lines[0], lines
    code, lines = run(str(clean_source), str(dst), ranks, "--restart")
    assert code == 0, lines
    assert verify(str(dst)) == 0
