"""Every scheme pair end to end: scipy writes the source, mpi_reshard
reshards it, scipy loads every output and the reassembled matrix equals the
source as a multiset of (row, col, value bits)."""
import os

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import read_report
from sparse_reshard.testing import (Scheme, canonical_multiset, fingerprint, read_sharded, render,
                                    skewed_matrix, write_sharded)

SHAPE = (503, 211)

PAIRS = [
    ("rows:block=50", "cols:block=40"),
    ("cols:block=40", "rows:block=50"),
    ("rows:block=50", "rows:block=73"),
    ("rows:block=50", "grid:block=120x70"),
    ("grid:block=120x70,shape=503x211", "rows:block=64"),
    ("rows:block=50", "rows:hash=mix,shards=6"),
    ("rows:hash=jump,shards=6", "rows:hash=jump,shards=7"),
    ("rows:hash=jump,shards=7", "rows:block=50"),
    ("cols:hash=rendezvous,shards=5", "cols:block=100,layout=csc"),
    ("rows:block=100", "cols:hash=mod,shards=4,seed=3"),
    # Explicit boundaries (what `plan --balance` proposes), as source and
    # as destination, including a one-row range and a grid of ranges.
    ("rows:block=50", "rows:ranges=0,1,7,300,301"),
    ("rows:ranges=0,1,7,300,301", "cols:ranges=0,100,101,200"),
    ("cols:ranges=0,100,101,200", "grid:row_ranges=0,250,col_ranges=0,3,150"),
]


@pytest.fixture(scope="module")
def matrix():
    return skewed_matrix(*SHAPE, 6000, seed=7)


def source_order_entries(pattern, scheme, shape):
    """Global (rows, cols, data) in source order: shard by shard, storage order."""
    return read_sharded(pattern, scheme, shape)


def expected_shards(rows, cols, data, new, shape):
    """What each destination shard must hold, exactly: sorted by local major
    index, then minor index, then source order."""
    dest = new.shard_of(rows, cols, shape)
    order = np.arange(len(rows))
    out = {}
    for s in range(new.shard_count(shape)):
        sel = dest == s
        r, c, v, o = rows[sel], cols[sel], data[sel], order[sel]
        if new.hash:
            ids = new.ids(s, shape)
            if new.axis == "rows":
                r, local_shape = np.searchsorted(ids, r), (len(ids), shape[1])
            else:
                c, local_shape = np.searchsorted(ids, c), (shape[0], len(ids))
        else:
            r0, r1, c0, c1 = new.box(s, shape)
            r, c, local_shape = r - r0, c - c0, (r1 - r0, c1 - c0)
        major, minor = (r, c) if new.layout == "csr" else (c, r)
        perm = np.lexsort((o, minor, major))
        nmajor = local_shape[0] if new.layout == "csr" else local_shape[1]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(major, minlength=nmajor))])
        out[s] = (local_shape, indptr, minor[perm], v[perm])
    return out


@pytest.mark.parametrize("old_text,new_text", PAIRS)
def test_pair_preserves_every_entry_and_exact_layout(tmp_path, reshard, matrix, old_text, new_text):
    old, new = Scheme.parse(old_text), Scheme.parse(new_text)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    dst = str(tmp_path / "dst" / "shard_{i}.npz")
    write_sharded(matrix, old, src)
    run = reshard(src, old_text, dst, new_text, ranks=3, extra=["--report", str(tmp_path / "report.json")])
    assert run.returncode == 0, run.stderr
    rows, cols, data = source_order_entries(src, old, SHAPE)
    got = read_sharded(dst, new, SHAPE)
    assert np.array_equal(canonical_multiset(rows, cols, data), canonical_multiset(*got))
    # Exactly the documented order inside every file, and every shard written.
    for s, (local_shape, indptr, indices, values) in expected_shards(rows, cols, data, new, SHAPE).items():
        path = render(dst, s, (s, 0) if new.hash else divmod(s, new.grid(SHAPE)[1]))
        m = sp.load_npz(path)
        assert m.format == new.layout
        assert m.shape == local_shape
        assert np.array_equal(m.indptr, indptr), path
        assert np.array_equal(m.indices, indices), path
        assert np.array_equal(m.data.view(np.uint64), values.view(np.uint64)), path
    report = read_report(tmp_path / "report.json")
    count, total = fingerprint(rows, cols, data)
    assert report["nnz"] == count
    assert report["source_fingerprint"] == {"nnz": count, "sum": f"{total:016x}"}
    assert report["destination_fingerprint"] == report["source_fingerprint"]
    assert report["shape"] == list(SHAPE)


@pytest.mark.parametrize("old_text,new_text", [("rows:block=50", "cols:block=40"),
                                                ("rows:hash=jump,shards=6", "rows:hash=jump,shards=7")])
def test_output_bytes_identical_for_1_to_4_ranks(tmp_path, reshard, matrix, old_text, new_text):
    old = Scheme.parse(old_text)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(matrix, old, src)
    outputs = {}
    for ranks in (1, 2, 3, 4):
        dst_dir = tmp_path / f"dst{ranks}"
        run = reshard(src, old_text, str(dst_dir / "shard_{i}.npz"), new_text, ranks=ranks)
        assert run.returncode == 0, run.stderr
        outputs[ranks] = {name: (dst_dir / name).read_bytes() for name in sorted(os.listdir(dst_dir))
                          if name.startswith("shard_")}
    assert outputs[1], "no output files"
    for ranks in (2, 3, 4):
        assert outputs[ranks] == outputs[1], f"{ranks} ranks wrote different bytes than 1 rank"


def test_source_untouched(tmp_path, reshard, matrix):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(matrix, Scheme.parse("rows:block=50"), src)
    before = {p: (os.stat(p).st_mtime_ns, open(p, "rb").read()) for p in sorted((tmp_path / "src").iterdir())}
    run = reshard(src, "rows:block=50", str(tmp_path / "dst" / "s_{i}.npz"), "cols:block=40")
    assert run.returncode == 0, run.stderr
    after = {p: (os.stat(p).st_mtime_ns, open(p, "rb").read()) for p in sorted((tmp_path / "src").iterdir())}
    assert before == after
