#!/usr/bin/python3
"""Demo helper: `make` writes a sample sharded matrix with scipy; `verify`
checks a resharded copy against it with scipy and the numpy reference
fingerprint; `h5ad-round-trip` opens .h5ad shards with anndata and compares
them and their conversion back to .npz with the source; each prints what it
checked."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402

from sparse_reshard.testing import (Scheme, canonical_multiset, fingerprint, read_sharded,  # noqa: E402
                                    skewed_matrix, write_sharded)


def make(args):
    t0 = time.time()
    m = skewed_matrix(args.rows, args.cols, args.nnz, seed=args.seed)
    paths = write_sharded(m, Scheme.parse(args.scheme), args.pattern, compressed=True)
    lengths = np.diff(m.indptr)
    print(f"made {m.shape[0]}x{m.shape[1]} matrix with {m.nnz} nonzeros in {len(paths)} shards "
          f"({args.scheme}); longest row {lengths.max()}, median row {int(np.median(lengths))}; "
          f"{time.time() - t0:.1f} s")


def verify(args):
    t0 = time.time()
    shape = tuple(int(x) for x in args.shape.split("x"))
    src = read_sharded(args.src, Scheme.parse(args.src_scheme), shape)
    dst = read_sharded(args.dst, Scheme.parse(args.dst_scheme), shape)
    same = np.array_equal(canonical_multiset(*src), canonical_multiset(*dst))
    count, total = fingerprint(*dst)
    with open(args.report) as f:
        report = json.load(f)
    reported = report["destination_fingerprint"]
    fp_ok = reported == {"nnz": count, "sum": f"{total:016x}"} and report["source_fingerprint"] == reported
    print(f"verify: scipy loaded every output shard; {len(dst[0])} entries; "
          f"multiset equal to source: {same}; numpy fingerprint nnz={count} sum={total:016x} "
          f"matches report: {fp_ok}; {time.time() - t0:.1f} s")
    return 0 if same and fp_ok else 3


def h5ad_round_trip(args):
    import warnings

    import anndata
    import scipy.sparse as sp
    warnings.simplefilter("ignore")
    t0 = time.time()
    shards = same = 0
    for i in range(10**6):
        src_path = args.src.format(i=i)
        if not os.path.exists(src_path):
            break
        source = sp.load_npz(src_path).tocsr()
        adata = anndata.read_h5ad(args.h5ad.format(i=i), backed="r")
        in_h5ad = adata.X[:]
        back = sp.load_npz(args.back.format(i=i)).tocsr()
        shards += 1
        same += int(in_h5ad.shape == source.shape and (in_h5ad != source).nnz == 0 and (back != source).nnz == 0)
    size = sum(os.path.getsize(args.h5ad.format(i=i)) for i in range(shards))
    print(f"h5ad: anndata opened {shards} .h5ad shards ({size / 2**20:.1f} MiB, backed='r'); "
          f"equal to the source in each, and so is their conversion back to .npz: {same == shards}; "
          f"{time.time() - t0:.1f} s")
    return 0 if shards > 0 and same == shards else 3


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make")
    p.add_argument("--pattern", required=True)
    p.add_argument("--scheme", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--cols", type=int, required=True)
    p.add_argument("--nnz", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    v = sub.add_parser("verify")
    for flag in ("--src", "--src-scheme", "--dst", "--dst-scheme", "--shape", "--report"):
        v.add_argument(flag, required=True)
    h = sub.add_parser("h5ad-round-trip")
    for flag in ("--src", "--h5ad", "--back"):
        h.add_argument(flag, required=True)
    args = parser.parse_args()
    if args.command == "make":
        make(args)
        return 0
    if args.command == "h5ad-round-trip":
        return h5ad_round_trip(args)
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
