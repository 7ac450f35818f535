#!/usr/bin/python3
"""The AnnData baselines, written the way a user would with anndata and
scipy in one process:
  split:  read_h5ad one file, then for each hashed row shard X[rows] and
          np.savez (indices, indptr, format, shape, data, row_ids);
  gather: load_npz each row-block shard, scipy.sparse.vstack, and
          AnnData(X).write_h5ad one file;
  make:   the benchmark's one .h5ad, from row-block .npz shards."""
import argparse
import os
import sys
import warnings

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from sparse_reshard.testing import Scheme, render  # noqa: E402

warnings.simplefilter("ignore")


def load_blocks(pattern, scheme, shape):
    return sp.vstack([sp.load_npz(render(pattern, s, scheme.position(s, shape))).tocsr()
                      for s in range(scheme.shard_count(shape))], format="csr")


def main():
    import anndata
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["split", "gather", "make"])
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--scheme", required=True, help="the shards' scheme (gather, make) or the new one (split)")
    ap.add_argument("--shape", required=True)
    a = ap.parse_args()
    shape = tuple(int(x) for x in a.shape.split("x"))
    scheme = Scheme.parse(a.scheme)
    os.makedirs(os.path.dirname(a.dst) or ".", exist_ok=True)
    if a.command in ("gather", "make"):
        x = load_blocks(a.src, scheme, shape)
        anndata.AnnData(X=x, dtype=x.dtype).write_h5ad(a.dst)
        return
    x = anndata.read_h5ad(a.src).X
    shard = scheme.hashed_shard(np.arange(shape[0], dtype=np.uint64))
    for d in range(scheme.shards):
        ids = np.flatnonzero(shard == d)
        local = x[ids]
        np.savez(render(a.dst, d, (d, 0)), indices=local.indices, indptr=local.indptr, format=b"csr",
                 shape=np.array(local.shape), data=local.data, row_ids=ids.astype(np.int64))


if __name__ == "__main__":
    main()
