#!/usr/bin/env python3
"""Writes the golden HDF5 files the C++ h5sparse codec tests read, with real
anndata (Debian's python3-anndata 0.8) and h5py, plus expected.json holding
what the numpy reference implementation says about them, and malformed files
with the one-line error each must give.

Run with Debian's python: /usr/bin/python3 tests/golden/h5/make_golden_h5.py
The files are committed; rerun only when adding cases.
"""
import json
import os
import sys
import warnings

import anndata
import h5py
import numpy as np
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "python"))
from sparse_reshard.testing import fingerprint  # noqa: E402

warnings.simplefilter("ignore")


def stored(name, group):
    """The matrix as the file holds it, read with h5py: anndata may convert
    what it was given (float32 by default), so the expectations come from
    the file, not from the matrix handed to it."""
    with h5py.File(path(name), "r") as f:
        g = f[group]
        data, indices, indptr = g["data"][:], g["indices"][:], g["indptr"][:]
        if "shape" in g.attrs:
            shape, kind = tuple(g.attrs["shape"]), g.attrs["encoding-type"]
        else:
            shape, kind = tuple(g["shape"][:]), "csc_matrix"
    cls = sp.csr_matrix if kind == "csr_matrix" else sp.csc_matrix
    m = cls((data, indices, indptr), shape=shape)
    m.indices, m.indptr = indices, indptr  # keep the stored widths
    return m


def describe(name, group, extra=None):
    m = stored(name, group)
    coo = m.tocoo()
    count, total = fingerprint(coo.row, coo.col, coo.data)
    entry = {"file": name, "group": group, "format": m.format, "shape": [int(x) for x in m.shape],
             "nnz": int(m.nnz), "value_dtype": str(m.data.dtype), "index_dtype": str(m.indices.dtype),
             "fingerprint_count": count, "fingerprint_sum": f"{total:016x}"}
    entry.update(extra or {})
    return entry


def path(name):
    return os.path.join(HERE, name)


def main():
    cases = []
    base = sp.random(9, 6, density=0.4, format="csr", random_state=3, dtype=np.float32)

    anndata.AnnData(X=base).write_h5ad(path("anndata_csr_f32.h5ad"))
    cases.append(describe("anndata_csr_f32.h5ad", "/X", {"compressed": False}))

    csc = base.tocsc().astype(np.float64)
    anndata.AnnData(X=csc, dtype=csc.dtype).write_h5ad(path("anndata_csc_gzip.h5ad"), compression="gzip")
    cases.append(describe("anndata_csc_gzip.h5ad", "/X", {"compressed": True}))

    wide = base.astype(np.int64)
    wide.indices = wide.indices.astype(np.int64)
    wide.indptr = wide.indptr.astype(np.int64)
    anndata.AnnData(X=wide, dtype=wide.dtype).write_h5ad(path("anndata_csr_index64.h5ad"))
    cases.append(describe("anndata_csr_index64.h5ad", "/X"))

    # Counts in a layer, beside a dense X.
    counts = (base * 10).astype(np.int32)
    anndata.AnnData(X=np.zeros(base.shape, dtype=np.float32), layers={"counts": counts}).write_h5ad(
        path("anndata_layer.h5ad"))
    cases.append(describe("anndata_layer.h5ad", "/layers/counts"))

    # 10x Genomics filtered_feature_bc_matrix.h5: features x barcodes, CSC.
    tenx = sp.random(7, 11, density=0.3, format="csc", random_state=4, dtype=np.float64)
    tenx.data = np.ceil(tenx.data * 20).astype(np.int32)
    tenx = tenx.astype(np.int32)
    with h5py.File(path("tenx_matrix.h5"), "w") as f:
        g = f.create_group("matrix")
        g["data"] = tenx.data
        g["indices"] = tenx.indices.astype(np.int64)
        g["indptr"] = tenx.indptr.astype(np.int64)
        g["shape"] = np.array(tenx.shape, dtype=np.int32)
        g["barcodes"] = np.array([f"AAAC-{i}".encode() for i in range(11)])
        feats = g.create_group("features")
        feats["id"] = np.array([f"ENSG{i:05d}".encode() for i in range(7)])
    cases.append(describe("tenx_matrix.h5", "/matrix"))

    # Malformed files and the message each must give (after "reading FILE: ").
    bad = []
    with h5py.File(path("bad_no_encoding.h5ad"), "w") as f:
        g = f.create_group("X")
        g["data"], g["indices"], g["indptr"] = base.data, base.indices, base.indptr
    bad.append({"file": "bad_no_encoding.h5ad",
                "error": "/X: no 'encoding-type' attribute (not an AnnData sparse matrix)"})

    anndata.AnnData(X=base).write_h5ad(path("bad_long_indptr.h5ad"))
    with h5py.File(path("bad_long_indptr.h5ad"), "a") as f:
        del f["X/indptr"]
        f["X/indptr"] = np.concatenate([base.indptr, base.indptr[-1:]])
    bad.append({"file": "bad_long_indptr.h5ad", "error": "/X: indptr length 11 does not match 9 rows"})

    anndata.AnnData(X=base).write_h5ad(path("bad_rank2.h5ad"))
    with h5py.File(path("bad_rank2.h5ad"), "a") as f:
        del f["X/indices"]
        f["X/indices"] = base.indices.reshape(1, -1)
    bad.append({"file": "bad_rank2.h5ad", "error": "dataset '/X/indices' has rank 2, not 1"})

    with open(path("bad_not_hdf5.h5ad"), "w") as f:
        f.write("obs,var\n1,2\n")
    bad.append({"file": "bad_not_hdf5.h5ad", "error": "not an HDF5 file (no HDF5 signature)"})

    with open(path("anndata_csr_f32.h5ad"), "rb") as f:
        whole = f.read()
    with open(path("bad_truncated.h5ad"), "wb") as f:
        f.write(whole[: len(whole) // 3])
    bad.append({"file": "bad_truncated.h5ad", "error_prefix": "not a readable HDF5 file: "})

    with open(path("expected.json"), "w") as f:
        json.dump({"files": cases, "bad": bad}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
