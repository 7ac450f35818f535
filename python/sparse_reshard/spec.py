"""ShardingSpec: the Python face of the CLI's sharding schemes (docs/schemes.md)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, Literal, Optional, Sequence, Tuple

#: How a scheme splits the matrix.
Axis = Literal["rows", "cols", "grid"]
#: Hash functions of hashed schemes (docs/schemes.md); ``jump`` and
#: ``rendezvous`` are consistent: N -> N+1 shards moves ~1/(N+1) of the data.
HashName = Literal["mod", "mix", "jump", "rendezvous"]
#: Storage layout of each shard file: scipy's csr_matrix or csc_matrix.
Layout = Literal["csr", "csc"]

AXES: Tuple[Axis, ...] = ("rows", "cols", "grid")
HASHES: Tuple[Optional[HashName], ...] = (None, "mod", "mix", "jump", "rendezvous")
LAYOUTS: Tuple[Layout, ...] = ("csr", "csc")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class ShardingSpec:
    """How a sparse matrix is split into shard files.

    ``axis`` is ``"rows"``, ``"cols"`` or ``"grid"``. Block schemes set
    ``block_rows`` and/or ``block_cols``; hashed schemes set ``hash`` (one of
    ``"mod"``, ``"mix"``, ``"jump"``, ``"rendezvous"``) and ``num_shards``.
    ``num_workers`` is how many MPI ranks the layout is meant for (the
    default rank count of :func:`sparse_reshard.reshuffle`).

    >>> ShardingSpec.row_blocks(250_000, num_workers=8).to_cli()
    'rows:block=250000,workers=8'
    >>> ShardingSpec.hashed("rows", "jump", num_shards=17)
    ShardingSpec('rows:hash=jump,shards=17')
    >>> ShardingSpec.from_cli("grid:block=100x50").block_cols
    50
    """

    axis: Axis = "rows"
    block_rows: int = 0
    block_cols: int = 0
    hash: Optional[HashName] = None
    num_shards: int = 0
    seed: int = 0
    num_workers: int = 0
    shape: Optional[Tuple[int, int]] = None
    layout: Layout = "csr"
    #: First row (column) of each shard, ascending from 0 (``rows:ranges=``,
    #: ``cols:ranges=``, ``grid:row_ranges=...,col_ranges=...``); the last
    #: shard runs to the end of the axis. ``None`` when split by block.
    row_starts: Optional[Tuple[int, ...]] = None
    col_starts: Optional[Tuple[int, ...]] = None

    def __post_init__(self) -> None:
        # Checked here, at construction, so that a bad scheme fails where it
        # is written rather than when the job starts.
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {self.axis!r}")
        if self.hash not in HASHES:
            raise ValueError(f"hash must be one of {HASHES}, got {self.hash!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be 'csr' or 'csc', got {self.layout!r}")
        for name in ("block_rows", "block_cols", "num_shards", "seed", "num_workers"):
            _check_int(name, getattr(self, name), 0)
        if self.shape is not None:
            if len(self.shape) != 2:
                raise ValueError(f"shape must be (rows, cols), got {self.shape!r}")
            for n in self.shape:
                _check_int("shape", n, 0)
            object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        for name in ("row_starts", "col_starts"):
            starts = getattr(self, name)
            if starts is None:
                continue
            starts = tuple(starts)
            if not starts:
                raise ValueError(f"{name} must hold at least one start (0)")
            for n in starts:
                _check_int(name, n, 0)
            if starts[0] != 0:
                raise ValueError(f"{name} must start at 0, not {starts[0]}")
            for a, b in zip(starts, starts[1:]):
                if b <= a:
                    raise ValueError(f"{name} must be strictly ascending: {b} follows {a}")
            object.__setattr__(self, name, tuple(int(n) for n in starts))
        if self.hash is not None and (self.row_starts or self.col_starts):
            raise ValueError("a hashed scheme takes no ranges")
        if self.hash is not None:
            if self.axis == "grid":
                raise ValueError("grid schemes take block sizes, not a hash")
            if self.num_shards < 1:
                raise ValueError("a hashed scheme needs num_shards >= 1")
            if self.num_shards > 2**31 - 1:
                raise ValueError("num_shards must be at most 2**31 - 1")
            if self.block_rows or self.block_cols:
                raise ValueError("a hashed scheme takes no block sizes")
            return
        if self.num_shards:
            raise ValueError("num_shards goes with hash=...")
        if self.axis == "grid" and (self.row_starts is None) != (self.col_starts is None):
            raise ValueError("a grid scheme takes block sizes, or both row_starts and col_starts")
        for axis, block, ranges in (("rows", "block_rows", "row_starts"), ("cols", "block_cols", "col_starts")):
            if self.axis not in (axis, "grid"):
                if getattr(self, block) or getattr(self, ranges) is not None:
                    raise ValueError(f"a {self.axis} scheme takes no {block} or {ranges}")
                continue
            if getattr(self, ranges) is not None:
                if getattr(self, block):
                    raise ValueError(f"{self.axis} scheme takes {block} or {ranges}, not both")
            elif getattr(self, block) < 1:
                raise ValueError(f"{self.axis} scheme needs {block} >= 1 or {ranges}")

    @classmethod
    def row_blocks(cls, rows: int, **options: Any) -> "ShardingSpec":
        """Shards of ``rows`` consecutive rows each (``rows:block=R``); the last may be shorter."""
        return cls(axis="rows", block_rows=rows, **options)

    @classmethod
    def col_blocks(cls, cols: int, **options: Any) -> "ShardingSpec":
        """Shards of ``cols`` consecutive columns each (``cols:block=C``)."""
        return cls(axis="cols", block_cols=cols, **options)

    @classmethod
    def grid(cls, rows: int, cols: int, **options: Any) -> "ShardingSpec":
        """2-D blocks of ``rows`` x ``cols`` (``grid:block=RxC``), named by ``{row}``/``{col}`` or ``{i}``."""
        return cls(axis="grid", block_rows=rows, block_cols=cols, **options)

    @classmethod
    def row_ranges(cls, starts: Sequence[int], **options: Any) -> "ShardingSpec":
        """Shards starting at the given rows (``rows:ranges=0,1000,...``), e.g. the
        boundaries :func:`sparse_reshard.plan` proposes.

        >>> ShardingSpec.row_ranges([0, 10, 400]).to_cli()
        'rows:ranges=0,10,400'
        """
        return cls(axis="rows", row_starts=tuple(starts), **options)

    @classmethod
    def single(cls, **options: Any) -> "ShardingSpec":
        """One shard holding the whole matrix, for a pattern without ``{i}``
        naming one file (``single``; ``layout="csc"`` for a CSC file).

        >>> ShardingSpec.single(layout="csc").to_cli()
        'single,layout=csc'
        """
        return cls(axis="rows", row_starts=(0,), **options)

    @classmethod
    def col_ranges(cls, starts: Sequence[int], **options: Any) -> "ShardingSpec":
        """Shards starting at the given columns (``cols:ranges=0,50,...``)."""
        return cls(axis="cols", col_starts=tuple(starts), **options)

    @classmethod
    def hashed(cls, axis: Axis, hash: HashName, *, num_shards: int, **options: Any) -> "ShardingSpec":
        """Rows or columns spread over ``num_shards`` shards by ``hash`` (``mod``, ``mix``,
        ``jump`` or ``rendezvous``; ``jump`` and ``rendezvous`` move only ~1/(N+1) of the
        data when N grows by one)."""
        if hash is None:
            raise ValueError("hashed() needs a hash function")
        return cls(axis=axis, hash=hash, num_shards=num_shards, **options)

    def to_cli(self) -> str:
        """The scheme as the CLI's ``--old-scheme``/``--new-scheme`` text."""
        if self.hash:
            text = f"{self.axis}:hash={self.hash},shards={self.num_shards}"
            if self.seed:
                text += f",seed={self.seed}"
        elif self.row_starts is not None or self.col_starts is not None:
            def join(starts: Optional[Tuple[int, ...]]) -> str:
                return ",".join(str(n) for n in starts or ())

            if self.axis == "grid":
                text = f"grid:row_ranges={join(self.row_starts)},col_ranges={join(self.col_starts)}"
            elif self.axis == "rows" and self.row_starts == (0,):
                text = "single"
            else:
                text = f"{self.axis}:ranges={join(self.row_starts if self.axis == 'rows' else self.col_starts)}"
        elif self.axis == "grid":
            text = f"grid:block={self.block_rows}x{self.block_cols}"
        else:
            text = f"{self.axis}:block={self.block_rows if self.axis == 'rows' else self.block_cols}"
        if self.num_workers:
            text += f",workers={self.num_workers}"
        if self.shape is not None:
            text += f",shape={self.shape[0]}x{self.shape[1]}"
        if self.layout == "csc":
            text += ",layout=csc"
        return text

    @classmethod
    def from_cli(cls, text: str) -> "ShardingSpec":
        """Parses the CLI's scheme text, e.g. ``"rows:hash=jump,shards=8"``; ``ValueError`` if it is not one."""
        if text == "single" or text.startswith("single,"):
            return cls.from_cli("rows:ranges=0" + text[len("single"):])
        axis, sep, rest = text.partition(":")
        if not sep:
            raise ValueError(f"scheme {text!r} must look like 'rows:block=R'")
        if axis not in AXES:
            raise ValueError(f"unknown scheme kind {axis!r} (expected rows, cols or grid)")
        fields: Dict[str, Any] = {"axis": axis}
        seen = set()
        open_list: Optional[list] = None  # the starts after "ranges=" continue past commas
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq and open_list is not None:
                try:
                    open_list.append(int(item))
                except ValueError:
                    raise ValueError(f"range start {item!r} is not an integer") from None
                continue
            open_list = None
            if not eq:
                raise ValueError(f"scheme option {item!r} needs =value")
            if key in seen:
                raise ValueError(f"scheme option {key!r} is given more than once")
            seen.add(key)
            try:
                if key == "block":
                    if axis == "grid":
                        r, _, c = value.partition("x")
                        fields["block_rows"], fields["block_cols"] = int(r), int(c)
                    else:
                        fields["block_rows" if axis == "rows" else "block_cols"] = int(value)
                elif key in ("ranges", "row_ranges", "col_ranges"):
                    if (key == "ranges") == (axis == "grid"):
                        raise ValueError(f"unknown scheme option {key!r} for a {axis} scheme")
                    rows = key == "row_ranges" or (key == "ranges" and axis == "rows")
                    open_list = [int(value)]
                    fields["row_starts" if rows else "col_starts"] = open_list
                elif key == "hash":
                    fields["hash"] = value
                elif key == "shards":
                    fields["num_shards"] = int(value)
                elif key == "seed":
                    fields["seed"] = int(value)
                elif key == "workers":
                    fields["num_workers"] = int(value)
                elif key == "shape":
                    r, _, c = value.partition("x")
                    fields["shape"] = (int(r), int(c))
                elif key == "layout":
                    fields["layout"] = value
                else:
                    raise ValueError(f"unknown scheme option {key!r}")
            except ValueError as e:
                if "unknown scheme option" in str(e):
                    raise
                raise ValueError(f"scheme option {item!r}: {value!r} is not a valid value") from None
            # 0 means "not given" in the dataclass; written out, it is a mistake.
            if key == "workers" and fields["num_workers"] < 1:
                raise ValueError(f"scheme option {item!r}: workers must be >= 1 (leave it out for the default)")
        for key in ("row_starts", "col_starts"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return cls(**fields)

    def to_json(self) -> str:
        """The scheme as JSON, the form the CLI reads from ``--old-scheme @file.json``.

        >>> ShardingSpec.col_blocks(7).to_json()[:40]
        '{"axis": "cols", "block_cols": 7, "block'
        """
        data = asdict(self)
        data["shape"] = list(self.shape) if self.shape is not None else None
        # Written only when used, as the CLI writes them.
        for key in ("row_starts", "col_starts"):
            if data[key] is None:
                del data[key]
            else:
                data[key] = list(data[key])
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ShardingSpec":
        """Parses :meth:`to_json`'s form; unknown keys are a ``ValueError``."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("scheme JSON must be an object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown scheme JSON keys: {sorted(unknown)}")
        for key in ("shape", "row_starts", "col_starts"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def __repr__(self) -> str:
        return f"ShardingSpec({self.to_cli()!r})"
