"""Reuse of unchanged shards: a destination shard equal to one source shard
(same block, layout, dtypes, compression kind) is copied, not re-encoded;
its checksum and fingerprint still go into the manifest."""
import os
import subprocess

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import binary, read_report
from sparse_reshard.testing import Scheme, read_sharded, skewed_matrix, write_sharded

SHAPE = (600, 300)


def make_source(tmp_path, scheme, *, compressed=True, fmt="csr", index_dtype=None, seed=4):
    src = tmp_path / "src" / "shard_{i}.npz"
    write_sharded(skewed_matrix(*SHAPE, 20000, seed=seed), Scheme.parse(scheme), str(src), compressed=compressed,
                  fmt=fmt, index_dtype=index_dtype)
    return src


def run_with_report(reshard, tmp_path, src, old, new, *, name="dst", ranks=2, extra=()):
    dst = tmp_path / name / "shard_{i}.npz"
    report = tmp_path / f"{name}.json"
    run = reshard(src, old, dst, new, ranks=ranks, extra=["--report", str(report), *extra])
    assert run.returncode == 0, run.stderr
    return dst, read_report(report)


@pytest.mark.parametrize("scheme", ["rows:block=100", "grid:block=200x100,shape=600x300", "rows:hash=jump,shards=5",
                                    "cols:block=60,layout=csc"])
@pytest.mark.parametrize("ranks", [1, 3])
def test_identity_reshard_copies_every_shard(tmp_path, reshard, scheme, ranks):
    layout_csc = "layout=csc" in scheme
    src = make_source(tmp_path, scheme, fmt="csc" if layout_csc else "csr", compressed=False)
    dst, r = run_with_report(reshard, tmp_path, src, scheme, scheme, ranks=ranks, extra=["--compress", "none"])
    shards = r["destination_shards"]
    assert r["totals"]["destination_shards_reused"] == shards
    assert r["totals"]["shards_copied_server_side"] == shards, "POSIX copies with copy_file_range"
    assert r["totals"]["bytes_sent"] == 0
    assert r["totals"]["bytes_reused"] == r["totals"]["bytes_written"]
    for i in range(shards):
        a, b = str(src).format(i=i), str(dst).format(i=i)
        assert open(a, "rb").read() == open(b, "rb").read()
        assert os.stat(a).st_ino != os.stat(b).st_ino and os.stat(b).st_nlink == 1, "never a hard link"
    verify = subprocess.run([binary(), "verify", "--dst", str(dst), "--against-src"], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_compression_kind_must_match_the_request(tmp_path, reshard):
    old = "rows:block=100"
    src = make_source(tmp_path, old, compressed=True)  # np.savez_compressed: every member deflated
    _, same_kind = run_with_report(reshard, tmp_path, src, old, old, name="deflate", extra=["--compress", "deflate:6"])
    assert same_kind["totals"]["destination_shards_reused"] == same_kind["destination_shards"]
    dst, other_kind = run_with_report(reshard, tmp_path, src, old, old, name="none", extra=["--compress", "none"])
    assert other_kind["totals"]["destination_shards_reused"] == 0
    rows, cols, data = read_sharded(str(dst), Scheme.parse(old), SHAPE)
    expected = skewed_matrix(*SHAPE, 20000, seed=4).tocoo()
    assert len(data) == expected.nnz
    got = sp.coo_matrix((data, (rows, cols)), shape=SHAPE).toarray()
    assert np.array_equal(got, expected.toarray())


def test_only_the_unchanged_shards_are_copied(tmp_path, reshard):
    # rows:block=100 -> rows:block=200 changes every shard, but a grid with
    # one column block and the same rows keeps every box.
    old = "rows:block=100"
    src = make_source(tmp_path, old, compressed=False)
    _, regroup = run_with_report(reshard, tmp_path, src, old, "rows:block=200", name="regroup",
                                 extra=["--compress", "none"])
    assert regroup["totals"]["destination_shards_reused"] == 0
    _, grid = run_with_report(reshard, tmp_path, src, old, f"grid:block=100x{SHAPE[1]}", name="grid",
                              extra=["--compress", "none"])
    assert grid["totals"]["destination_shards_reused"] == grid["destination_shards"]


def write_unsorted_shard(path, seed):
    """A CSR shard whose column indices run backwards within each row."""
    m = sp.random(100, SHAPE[1], density=0.05, format="csr", random_state=seed)
    indices = m.indices.copy()
    data = m.data.copy()
    for i in range(m.shape[0]):
        lo, hi = m.indptr[i], m.indptr[i + 1]
        indices[lo:hi] = indices[lo:hi][::-1]
        data[lo:hi] = data[lo:hi][::-1]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, indices=indices, indptr=m.indptr, format=b"csr", shape=np.array(m.shape), data=data)


def test_non_canonical_or_wider_index_sources_are_rewritten_not_copied(tmp_path, reshard):
    old = "rows:block=100"
    src = tmp_path / "src" / "shard_{i}.npz"
    for i in range(6):
        write_unsorted_shard(str(src).format(i=i), seed=i)
    dst, r = run_with_report(reshard, tmp_path, src, old, old, extra=["--compress", "none"])
    assert r["totals"]["destination_shards_reused"] == 0
    shard = sp.load_npz(str(dst).format(i=0))
    assert shard.has_sorted_indices, "the written shard is canonical"
    wide = make_source(tmp_path / "wide", old, compressed=False, index_dtype=np.int64)
    _, r = run_with_report(reshard, tmp_path, wide, old, old, name="wide", extra=["--compress", "none"])
    assert r["totals"]["destination_shards_reused"] == 0, "int64 indices where int32 fits would differ"


def test_a_crash_after_copies_resumes_to_the_same_result(tmp_path, reshard):
    old = "rows:block=50"
    src = make_source(tmp_path, old, compressed=False)
    dst = tmp_path / "dst" / "shard_{i}.npz"
    crashed = reshard(src, old, dst, old, extra=["--compress", "none", "--manifest-batch", "1"],
                      env={"RESHARD_FAULT": "before-report:after=2"})
    assert crashed.returncode != 0
    report = tmp_path / "r.json"
    resumed = reshard(src, old, dst, old, extra=["--compress", "none", "--report", str(report)])
    assert resumed.returncode == 0, resumed.stderr
    r = read_report(report)
    assert r["resumed"] and r["destination_shards_kept"] >= 2
    assert r["destination_shards_kept"] + r["totals"]["destination_shards_reused"] == r["destination_shards"]
    for i in range(r["destination_shards"]):
        assert open(str(src).format(i=i), "rb").read() == open(str(dst).format(i=i), "rb").read()
