#!/usr/bin/python3
"""Demo helper: `make` writes a sample sharded matrix with scipy; `verify`
checks a resharded copy against it with scipy and the numpy reference
fingerprint, and prints what it checked."""
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
    args = parser.parse_args()
    if args.command == "make":
        make(args)
        return 0
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
