#!/usr/bin/env python3
"""Writes the golden .npz files the C++ codec tests read, with real scipy and
numpy, plus expected.json holding what the numpy reference implementation
(python/sparse_reshard/testing.py) says about them.

Run with Debian's python: /usr/bin/python3 tests/golden/make_golden.py
The files are committed; rerun only when adding cases.
"""
import json
import os
import sys
import zipfile

import numpy as np
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
from sparse_reshard.testing import Scheme, fingerprint  # noqa: E402


def describe(name, m, extra=None):
    coo = m.tocoo()
    count, total = fingerprint(coo.row, coo.col, coo.data)
    entry = {
        "file": name,
        "format": m.format,
        "shape": list(m.shape),
        "nnz": int(m.nnz),
        "value_dtype": str(m.data.dtype),
        "fingerprint_count": count,
        "fingerprint_sum": f"{total:016x}",
    }
    if extra:
        entry.update(extra)
    return entry


def main():
    rng = np.random.default_rng(42)
    cases = []

    base = sp.random(7, 5, density=0.4, format="csr", random_state=1, dtype=np.float64)
    sp.save_npz(os.path.join(HERE, "csr_f64_deflate.npz"), base, compressed=True)
    cases.append(describe("csr_f64_deflate.npz", base))
    sp.save_npz(os.path.join(HERE, "csr_f64_stored.npz"), base, compressed=False)
    cases.append(describe("csr_f64_stored.npz", base))

    csc = base.tocsc().astype(np.float32)
    sp.save_npz(os.path.join(HERE, "csc_f32.npz"), csc)
    cases.append(describe("csc_f32.npz", csc))

    coo = base.tocoo().astype(np.int32)
    sp.save_npz(os.path.join(HERE, "coo_i32.npz"), coo)
    cases.append(describe("coo_i32.npz", coo))

    wide = base.astype(np.int64)
    wide.indices = wide.indices.astype(np.int64)
    wide.indptr = wide.indptr.astype(np.int64)
    sp.save_npz(os.path.join(HERE, "csr_i64_index64.npz"), wide)
    cases.append(describe("csr_i64_index64.npz", wide, {"index_dtype": "int64"}))

    flags = (base > 0.5).astype(bool)
    sp.save_npz(os.path.join(HERE, "csr_bool.npz"), flags)
    cases.append(describe("csr_bool.npz", flags))

    # Unsorted indices, a duplicate (i, j) and an explicit zero, kept as stored.
    messy = sp.csr_matrix((np.array([3.0, 0.0, 1.0, 1.0, np.nan]), np.array([4, 1, 0, 0, 2]),
                           np.array([0, 2, 4, 5])), shape=(3, 5))
    assert not messy.has_sorted_indices
    sp.save_npz(os.path.join(HERE, "csr_noncanonical.npz"), messy)
    cases.append(describe("csr_noncanonical.npz", messy))

    empty = sp.csr_matrix((0, 0))
    sp.save_npz(os.path.join(HERE, "csr_empty.npz"), empty)
    cases.append(describe("csr_empty.npz", empty))

    # ZIP64 end records, as archives over 4 GiB carry them, forced small.
    saved_limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 64
    try:
        sp.save_npz(os.path.join(HERE, "csr_zip64.npz"), base)
    finally:
        zipfile.ZIP64_LIMIT = saved_limit
    cases.append(describe("csr_zip64.npz", base))

    # Hash assignments the C++ ShardMap must reproduce.
    keys = np.concatenate([np.arange(0, 64), rng.integers(0, 2**62, 64)]).astype(np.uint64)
    hashes = {}
    for text in ["rows:hash=mod,shards=7", "rows:hash=mix,shards=7", "rows:hash=mix,shards=13,seed=99",
                 "rows:hash=jump,shards=1", "rows:hash=jump,shards=17", "rows:hash=jump,shards=1000,seed=5",
                 "rows:hash=rendezvous,shards=9"]:
        hashes[text] = [int(x) for x in Scheme.parse(text).hashed_shard(keys)]
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump({"files": cases, "hash_keys": [str(int(k)) for k in keys], "hashes": hashes}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
