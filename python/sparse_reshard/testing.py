"""Reference implementation of the sharding schemes and the fingerprint in
numpy, independent of the C++ code: used by the tests as the oracle, by the
demo to verify output, and to make sample sharded matrices.

Needs numpy and scipy (Debian: python3-numpy, python3-scipy).
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

U64 = np.uint64
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The standard splitmix64 finalizer, elementwise on uint64 (wrapping)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=U64) + U64(GOLDEN)
        z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
        return z ^ (z >> U64(31))


def jump_hash(keys: np.ndarray, buckets: int) -> np.ndarray:
    """Lamping-Veach jump consistent hash, vectorized."""
    key = np.asarray(keys, dtype=U64).copy()
    b = np.full(key.shape, -1, dtype=np.int64)
    j = np.zeros(key.shape, dtype=np.int64)
    active = j < buckets
    with np.errstate(over="ignore"):
        while active.any():
            b[active] = j[active]
            key[active] = key[active] * U64(2862933555777941757) + U64(1)
            denom = ((key[active] >> U64(33)) + U64(1)).astype(np.float64)
            j[active] = ((b[active] + 1).astype(np.float64) * (float(1 << 31) / denom)).astype(np.int64)
            active = j < buckets
    return b


def rendezvous_hash(keys: np.ndarray, buckets: int) -> np.ndarray:
    key = np.asarray(keys, dtype=U64)
    best = np.zeros(key.shape, dtype=np.int64)
    best_w = np.zeros(key.shape, dtype=U64)
    for s in range(buckets):
        w = splitmix64(key ^ splitmix64(np.array([s], dtype=U64))[0])
        better = (w > best_w) if s > 0 else np.ones(key.shape, dtype=bool)
        best[better] = s
        best_w[better] = w[better]
    return best


def value_bits(data: np.ndarray) -> np.ndarray:
    """Raw little-endian bits of each value, zero-extended to uint64."""
    data = np.ascontiguousarray(data)
    width = data.dtype.itemsize
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    return data.view(unsigned).astype(U64)


def fingerprint(rows: np.ndarray, cols: np.ndarray, data: np.ndarray) -> Tuple[int, int]:
    """(count, sum mod 2^64 of splitmix64(splitmix64(splitmix64(r) ^ c) ^ v))."""
    r = np.asarray(rows, dtype=U64)
    c = np.asarray(cols, dtype=U64)
    h = splitmix64(splitmix64(splitmix64(r) ^ c) ^ value_bits(data))
    return int(len(h)), int(np.sum(h, dtype=U64)) if len(h) else 0


@dataclass(frozen=True)
class Scheme:
    axis: str  # rows | cols | grid
    block_rows: int = 0
    block_cols: int = 0
    hash: Optional[str] = None
    shards: int = 0
    seed: int = 0
    layout: str = "csr"
    row_starts: Tuple[int, ...] = ()  # rows:ranges= / grid:row_ranges=
    col_starts: Tuple[int, ...] = ()

    @staticmethod
    def parse(text: str) -> "Scheme":
        if text == "single" or text.startswith("single,"):
            text = "rows:ranges=0" + text[len("single"):]
        axis, _, rest = text.partition(":")
        opts: Dict[str, str] = {}
        last = ""
        for item in (i for i in rest.split(",") if i):
            if "=" in item:
                last, value = item.split("=", 1)
                opts[last] = value
            else:  # more starts of a ranges list
                opts[last] += "," + item
        br = bc = 0
        if "block" in opts:
            if axis == "grid":
                br, bc = (int(x) for x in opts["block"].split("x"))
            elif axis == "rows":
                br = int(opts["block"])
            else:
                bc = int(opts["block"])
        starts = {k: tuple(int(x) for x in v.split(",")) for k, v in opts.items() if k.endswith("ranges")}
        rs = starts.get("row_ranges", starts.get("ranges", ()) if axis == "rows" else ())
        cs = starts.get("col_ranges", starts.get("ranges", ()) if axis == "cols" else ())
        return Scheme(axis, br, bc, opts.get("hash"), int(opts.get("shards", 0)), int(opts.get("seed", 0)),
                      opts.get("layout", "csr"), rs, cs)

    def _blocks(self, extent: int, block: int, starts: Tuple[int, ...]) -> int:
        return len(starts) if starts else max(1, -(-extent // block))

    def _index(self, x: np.ndarray, block: int, starts: Tuple[int, ...]) -> np.ndarray:
        if starts:
            return np.searchsorted(np.asarray(starts, dtype=np.int64), x, side="right") - 1
        return x // block

    def _range(self, i: int, extent: int, block: int, starts: Tuple[int, ...]) -> Tuple[int, int]:
        if starts:
            return min(extent, starts[i]), (min(extent, starts[i + 1]) if i + 1 < len(starts) else extent)
        return min(extent, i * block), min(extent, (i + 1) * block)

    def hashed_shard(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=U64)
        n = self.shards
        if self.hash == "mod":
            return (keys % U64(n)).astype(np.int64)
        mixed = splitmix64(keys ^ U64(self.seed))
        if self.hash == "mix":
            return (mixed % U64(n)).astype(np.int64)
        if self.hash == "jump":
            return jump_hash(mixed, n)
        if self.hash == "rendezvous":
            return rendezvous_hash(keys ^ U64(self.seed), n)
        raise ValueError(self.hash)

    def grid(self, shape: Tuple[int, int]) -> Tuple[int, int]:
        nrows, ncols = shape
        if self.hash:
            return (self.shards, 1) if self.axis == "rows" else (1, self.shards)
        rb = 1 if self.axis == "cols" else self._blocks(nrows, self.block_rows, self.row_starts)
        cb = 1 if self.axis == "rows" else self._blocks(ncols, self.block_cols, self.col_starts)
        return rb, cb

    def shard_count(self, shape: Tuple[int, int]) -> int:
        rb, cb = self.grid(shape)
        return rb * cb

    def shard_of(self, rows: np.ndarray, cols: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if self.hash:
            return self.hashed_shard(rows if self.axis == "rows" else cols)
        _, cb = self.grid(shape)
        rb_idx = np.zeros_like(rows) if self.axis == "cols" else self._index(rows, self.block_rows, self.row_starts)
        cb_idx = np.zeros_like(cols) if self.axis == "rows" else self._index(cols, self.block_cols, self.col_starts)
        return rb_idx * cb + cb_idx

    def box(self, shard: int, shape: Tuple[int, int]) -> Tuple[int, int, int, int]:
        """(row_begin, row_end, col_begin, col_end) of a block shard."""
        nrows, ncols = shape
        _, cb = self.grid(shape)
        bi, bj = divmod(shard, cb)
        r0, r1 = (0, nrows) if self.axis == "cols" else self._range(bi, nrows, self.block_rows, self.row_starts)
        c0, c1 = (0, ncols) if self.axis == "rows" else self._range(bj, ncols, self.block_cols, self.col_starts)
        return r0, r1, c0, c1

    def ids(self, shard: int, shape: Tuple[int, int]) -> np.ndarray:
        extent = shape[0] if self.axis == "rows" else shape[1]
        keys = np.arange(extent, dtype=np.int64)
        return keys[self.hashed_shard(keys) == shard]

    def position(self, shard: int, shape: Tuple[int, int]) -> Tuple[int, int]:
        if self.hash:
            return (shard, 0) if self.axis == "rows" else (0, shard)
        return divmod(shard, self.grid(shape)[1])


def render(pattern: str, shard: int, pos: Tuple[int, int]) -> str:
    return pattern.replace("{i}", str(shard)).replace("{row}", str(pos[0])).replace("{col}", str(pos[1]))


def _save_arrays(path: str, arrays: Dict[str, np.ndarray], compressed: bool) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


def write_sharded(matrix: sp.spmatrix, scheme: Scheme, pattern: str, *, compressed: bool = True,
                  fmt: str = "csr", index_dtype=None, source_order: Optional[np.ndarray] = None) -> List[str]:
    """Shards a global matrix with `scheme` and saves each shard as scipy does.

    The global COO entries (in the given order) go to their shards in that
    order, so duplicates and unsorted indices survive into the files when the
    shard format is coo; csr/csc shards are built with scipy (canonical
    unless the input had duplicates, which scipy keeps in csr without summing).
    """
    coo = matrix.tocoo()
    shape = coo.shape
    rows, cols, data = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    shard = scheme.shard_of(rows, cols, shape)
    paths = []
    for s in range(scheme.shard_count(shape)):
        sel = shard == s
        r, c, v = rows[sel], cols[sel], data[sel]
        extra = {}
        if scheme.hash:
            ids = scheme.ids(s, shape)
            if scheme.axis == "rows":
                r = np.searchsorted(ids, r)
                local_shape = (len(ids), shape[1])
                extra["row_ids"] = ids.astype(np.int64)
            else:
                c = np.searchsorted(ids, c)
                local_shape = (shape[0], len(ids))
                extra["col_ids"] = ids.astype(np.int64)
        else:
            r0, r1, c0, c1 = scheme.box(s, shape)
            r, c = r - r0, c - c0
            local_shape = (r1 - r0, c1 - c0)
        local = sp.coo_matrix((v, (r, c)), shape=local_shape)
        local = {"csr": local.tocsr, "csc": local.tocsc, "coo": lambda: local}[fmt]()
        path = render(pattern, s, scheme.position(s, shape))
        if fmt == "coo":
            arrays = {"row": local.row, "col": local.col}
        else:
            arrays = {"indices": local.indices, "indptr": local.indptr}
        if index_dtype is not None:
            arrays = {k: a.astype(index_dtype) for k, a in arrays.items()}
        arrays.update(format=fmt.encode("ascii"), shape=np.array(local_shape, dtype=np.int64), data=local.data)
        arrays.update(extra)
        _save_arrays(path, arrays, compressed)
        paths.append(path)
    return paths


def read_sharded(pattern: str, scheme: Scheme, shape: Tuple[int, int],
                 reader: Optional[Callable[[str], bytes]] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loads every shard with scipy.sparse.load_npz and returns global COO
    arrays (rows, cols, data) in file order. ``reader(name)`` returns a
    shard's bytes where the shards are not local files (object stores)."""
    rows, cols, datas = [], [], []
    for s in range(scheme.shard_count(shape)):
        path = render(pattern, s, scheme.position(s, shape))
        content = reader(path) if reader is not None else None
        opened = (lambda: io.BytesIO(content)) if content is not None else (lambda: path)
        m = sp.load_npz(opened()).tocoo()
        r, c = m.row.astype(np.int64), m.col.astype(np.int64)
        if scheme.hash:
            with np.load(opened()) as z:
                if scheme.axis == "rows":
                    r = z["row_ids"][r]
                else:
                    c = z["col_ids"][c]
        else:
            r0, _, c0, _ = scheme.box(s, shape)
            r, c = r + r0, c + c0
        rows.append(r)
        cols.append(c)
        datas.append(m.data)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(datas)


def canonical_multiset(rows: np.ndarray, cols: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Entries as a sorted (n, 3) uint64 array of (row, col, value bits)."""
    triples = np.stack([np.asarray(rows, dtype=U64), np.asarray(cols, dtype=U64), value_bits(data)], axis=1)
    order = np.lexsort((triples[:, 2], triples[:, 1], triples[:, 0]))
    return triples[order]


def skewed_matrix(nrows: int, ncols: int, nnz: int, *, seed: int = 0, dtype=np.float64) -> sp.csr_matrix:
    """A matrix with power-law row lengths and popular columns, like real
    interaction data."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, nrows + 1) ** 0.8
    rng.shuffle(weights)
    rows = rng.choice(nrows, size=nnz, p=weights / weights.sum())
    cols = np.minimum((rng.pareto(1.2, size=nnz) * ncols / 50).astype(np.int64), ncols - 1)
    data = rng.standard_normal(nnz).astype(dtype)
    m = sp.coo_matrix((data, (rows, cols)), shape=(nrows, ncols)).tocsr()
    m.sum_duplicates()
    return m
