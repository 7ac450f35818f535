"""Input variety scipy produces (dtypes, index widths, compression, formats,
non-canonical matrices, degenerate shapes) and the report/summary."""
import os
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import read_report
from sparse_reshard.testing import Scheme, canonical_multiset, read_sharded, skewed_matrix, write_sharded


def roundtrip(tmp_path, reshard, matrix, old_text, new_text, *, ranks=2, extra=(), **write_kwargs):
    shape = matrix.shape
    src = str(tmp_path / "src" / "shard_{i}.npz")
    dst = str(tmp_path / "dst" / "shard_{i}.npz")
    write_sharded(matrix, Scheme.parse(old_text), src, **write_kwargs)
    run = reshard(src, old_text, dst, new_text, ranks=ranks, extra=list(extra))
    assert run.returncode == 0, run.stderr
    a = read_sharded(src, Scheme.parse(old_text), shape)
    b = read_sharded(dst, Scheme.parse(new_text), shape)
    assert np.array_equal(canonical_multiset(*a), canonical_multiset(*b))
    return dst, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_value_dtypes_survive_bit_for_bit(tmp_path, reshard, dtype):
    m = skewed_matrix(120, 50, 800, seed=1)
    m.data = (m.data * 100).astype(dtype) if dtype != np.bool_ else (m.data > 0)
    dst, (_, _, data) = roundtrip(tmp_path, reshard, m, "rows:block=25", "cols:block=12")
    assert data.dtype == np.dtype(dtype)
    assert sp.load_npz(dst.format(i=0)).dtype == np.dtype(dtype)


def test_nan_payloads_and_explicit_zeros_kept(tmp_path, reshard):
    payloads = np.array([0x7FF8000000000001, 0x7FF0000000000123, 0xFFF8000000000000], dtype=np.uint64)
    data = np.concatenate([payloads.view(np.float64), [0.0, -0.0]])
    m = sp.csr_matrix((data, np.array([0, 1, 2, 3, 4]), np.array([0, 2, 5])), shape=(2, 5))
    _, (_, _, got) = roundtrip(tmp_path, reshard, m, "rows:block=1", "cols:block=2")
    assert sorted(got.view(np.uint64).tolist()) == sorted(data.view(np.uint64).tolist())


def test_int64_indices_and_uncompressed_input(tmp_path, reshard):
    m = skewed_matrix(200, 90, 1500, seed=2)
    roundtrip(tmp_path, reshard, m, "rows:block=30", "grid:block=64x32", index_dtype=np.int64, compressed=False)


def test_csc_and_coo_source_files(tmp_path, reshard):
    m = skewed_matrix(200, 90, 1500, seed=3)
    roundtrip(tmp_path / "csc", reshard, m, "cols:block=20", "rows:block=33", fmt="csc")
    roundtrip(tmp_path / "coo", reshard, m, "rows:block=20", "cols:block=33", fmt="coo")


def test_duplicates_and_unsorted_indices_are_kept_not_summed(tmp_path, reshard):
    # Row 0 has column 3 twice and unsorted columns; save_npz keeps that as is.
    m = sp.csr_matrix((np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([3, 1, 3, 0, 2]), np.array([0, 3, 3, 5])),
                      shape=(3, 4))
    assert not m.has_canonical_format
    os.makedirs(tmp_path / "src")
    sp.save_npz(tmp_path / "src" / "shard_0.npz", m)
    dst = str(tmp_path / "dst" / "shard_{i}.npz")
    run = reshard(str(tmp_path / "src" / "shard_{i}.npz"), "rows:block=3", dst, "rows:block=2")
    assert run.returncode == 0, run.stderr
    rows, cols, data = read_sharded(dst, Scheme.parse("rows:block=2"), (3, 4))
    assert np.array_equal(canonical_multiset(rows, cols, data), canonical_multiset(*(lambda c: (c.row, c.col, c.data))(m.tocoo())))
    out = sp.load_npz(dst.format(i=0))
    # Within a row: columns ascending, the two (0, 3) entries in source order.
    assert out.indices.tolist() == [1, 3, 3]
    assert out.data.tolist() == [2.0, 1.0, 3.0]
    assert sp.load_npz(dst.format(i=1)).indices.tolist() == [0, 2]


def test_empty_shards_zero_nnz_and_one_by_one(tmp_path, reshard):
    empty = sp.csr_matrix((40, 30))
    dst, _ = roundtrip(tmp_path / "zero", reshard, empty, "rows:block=7", "cols:block=4")
    files = sorted(f for f in os.listdir(os.path.dirname(dst)) if f.startswith("shard_"))
    assert len(files) == 8, "every destination shard is written, even empty ones"
    for name in files:
        m = sp.load_npz(os.path.join(os.path.dirname(dst), name))
        assert m.nnz == 0
        assert m.shape[0] == 40
    one = sp.csr_matrix(np.array([[2.5]]))
    roundtrip(tmp_path / "one", reshard, one, "rows:block=1", "cols:block=1", ranks=3)
    # A matrix whose nonzeros all sit in one block: the other shards are empty.
    corner = sp.csr_matrix((np.array([1.0, 2.0]), (np.array([0, 1]), np.array([0, 1]))), shape=(50, 50))
    roundtrip(tmp_path / "corner", reshard, corner, "rows:block=10", "grid:block=10x10", ranks=4)


def test_compress_none_and_levels(tmp_path, reshard):
    m = skewed_matrix(300, 100, 3000, seed=4)
    sizes = {}
    for mode in ("none", "deflate:1", "deflate:9"):
        dst, _ = roundtrip(tmp_path / mode.replace(":", "_"), reshard, m, "rows:block=50", "cols:block=50",
                           extra=["--compress", mode])
        sizes[mode] = sum(os.path.getsize(os.path.join(os.path.dirname(dst), f))
                          for f in os.listdir(os.path.dirname(dst)) if f.startswith("shard_"))
        with zipfile.ZipFile(dst.format(i=0)) as z:
            methods = {info.compress_type for info in z.infolist()}
        assert methods == ({zipfile.ZIP_STORED} if mode == "none" else {zipfile.ZIP_DEFLATED})
    assert sizes["none"] > sizes["deflate:1"] >= sizes["deflate:9"]


def test_multi_round_exchange(tmp_path, reshard):
    m = skewed_matrix(300, 100, 3000, seed=5)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(m, Scheme.parse("rows:block=50"), src)
    report = tmp_path / "r.json"
    run = reshard(src, "rows:block=50", str(tmp_path / "dst" / "s_{i}.npz"), "cols:block=10", ranks=3,
                  extra=["--max-message-bytes", "4096", "--report", str(report)])
    assert run.returncode == 0, run.stderr
    assert read_report(report)["exchange_rounds"] > 1


def test_report_summary_and_progress(tmp_path, reshard):
    m = skewed_matrix(300, 100, 3000, seed=6)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(m, Scheme.parse("rows:block=50"), src)
    report_path = tmp_path / "report.json"
    run = reshard(src, "rows:block=50", str(tmp_path / "dst" / "s_{i}.npz"), "cols:block=30", ranks=2,
                  extra=["--report", str(report_path), "--progress"])
    assert run.returncode == 0, run.stderr
    report = read_report(report_path)
    assert report["ranks"] == 2 and len(report["per_rank"]) == 2
    assert report["source_shards"] == 6 and report["destination_shards"] == 4
    totals = report["totals"]
    assert totals["entries_sent"] + totals["entries_kept_local"] == report["nnz"] == m.nnz
    # 16 bytes per entry, plus 16 per (source, destination) segment sent.
    segments_sent = (totals["bytes_sent"] - 16 * totals["entries_sent"]) // 16
    assert totals["bytes_sent"] == 16 * totals["entries_sent"] + 16 * segments_sent
    assert 0 < segments_sent <= 6 * 4
    assert totals["bytes_read"] == sum(os.path.getsize(tmp_path / "src" / f) for f in os.listdir(tmp_path / "src"))
    assert totals["bytes_written"] == sum(os.path.getsize(tmp_path / "dst" / f) for f in os.listdir(tmp_path / "dst")
                                         if f.startswith("s_"))
    for stage in ("plan", "read", "bucket", "exchange", "assemble", "write"):
        assert stage in report["seconds"]
    assert f"fingerprint source nnz={m.nnz} " in run.stdout
    progress = [line for line in run.stderr.splitlines() if line.startswith("progress")]
    assert len(progress) >= 4 and "100.0%" in progress[-1]


def test_igzip_chunked_members_read_by_scipy_and_zipfile(tmp_path, reshard):
    # data (8 bytes x 700k) spans two 4 MiB igzip chunks, so this reads a
    # stream joined at a full-flush boundary, not a single-chunk one. The source
    # is stored, so the shard is rewritten rather than copied (see test_reuse).
    rng = np.random.default_rng(7)
    m = sp.random(4000, 3000, density=700_000 / 12e6, format="csr", random_state=rng)
    m.data = np.round(m.data * 50)
    outputs = {}
    for ranks, threads in ((1, 1), (3, 2)):
        name = f"np{ranks}_t{threads}"
        dst, _ = roundtrip(tmp_path / name, reshard, m, "rows:block=4000", "rows:block=4000", ranks=ranks,
                           extra=["--compress", "igzip:1", "--threads", str(threads)], compressed=False)
        path = dst.format(i=0)
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None
            assert {info.compress_type for info in z.infolist()} == {zipfile.ZIP_DEFLATED}
            assert z.getinfo("data.npy").file_size > 4 << 20
        got = sp.load_npz(path)
        assert (got != m).nnz == 0
        with open(path, "rb") as f:
            outputs[name] = f.read()
    assert outputs["np1_t1"] == outputs["np3_t2"]
    assert len(outputs["np1_t1"]) < 0.7 * (m.data.nbytes + m.indices.nbytes)
