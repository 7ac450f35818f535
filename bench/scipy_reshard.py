#!/usr/bin/python3
"""The baseline: a single-process reshard written the way a user would with
scipy (load_npz each shard, tocoo, bucket by destination, save_npz)."""
import argparse
import os
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from sparse_reshard.testing import Scheme, render  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--old", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--shape", required=True)
    ap.add_argument("--compressed", type=int, default=1)
    a = ap.parse_args()
    shape = tuple(int(x) for x in a.shape.split("x"))
    old, new = Scheme.parse(a.old), Scheme.parse(a.new)
    buckets = {}
    for s in range(old.shard_count(shape)):
        m = sp.load_npz(render(a.src, s, old.position(s, shape))).tocoo()
        r0, _, c0, _ = old.box(s, shape)
        rows, cols = m.row.astype(np.int64) + r0, m.col.astype(np.int64) + c0
        dest = new.shard_of(rows, cols, shape)
        order = np.argsort(dest, kind="stable")
        bounds = np.searchsorted(dest[order], np.arange(new.shard_count(shape) + 1))
        for d in range(new.shard_count(shape)):
            sel = order[bounds[d]:bounds[d + 1]]
            if len(sel):
                buckets.setdefault(d, []).append((rows[sel], cols[sel], m.data[sel]))
    os.makedirs(os.path.dirname(a.dst), exist_ok=True)
    for d in range(new.shard_count(shape)):
        parts = buckets.get(d, [])
        rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        cols = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        data = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
        path = render(a.dst, d, new.position(d, shape))
        if new.hash:
            ids = new.ids(d, shape)
            local = sp.coo_matrix((data, (np.searchsorted(ids, rows), cols)), shape=(len(ids), shape[1])).tocsr()
            np.savez_compressed(path, indices=local.indices, indptr=local.indptr, format=b"csr",
                                shape=np.array(local.shape), data=local.data, row_ids=ids) if a.compressed else \
                np.savez(path, indices=local.indices, indptr=local.indptr, format=b"csr",
                         shape=np.array(local.shape), data=local.data, row_ids=ids)
        else:
            r0, r1, c0, c1 = new.box(d, shape)
            local = sp.coo_matrix((data, (rows - r0, cols - c0)), shape=(r1 - r0, c1 - c0)).tocsr()
            sp.save_npz(path, local, compressed=bool(a.compressed))


if __name__ == "__main__":
    main()
