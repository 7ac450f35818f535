"""JobReport: the program's --report JSON as a typed object (docs/operations.md, "The report")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple


@dataclass(frozen=True)
class RankReport:
    """What one rank did."""

    rank: int
    bytes_read: int
    bytes_written: int
    bytes_sent: int
    entries_received: int
    peak_rss_bytes: int
    seconds: Dict[str, float]


@dataclass(frozen=True)
class JobReport:
    """What a finished job did. ``raw`` keeps the whole JSON for the keys
    not lifted into fields."""

    shape: Tuple[int, int]
    nnz: int
    ranks: int
    source_shards: int
    destination_shards: int
    bytes_read: int
    bytes_written: int
    bytes_sent: int
    entries_sent: int
    entries_kept_local: int
    destination_shards_reused: int
    resumed: bool
    wall_seconds: float
    seconds: Dict[str, float]
    per_rank: List[RankReport] = field(default_factory=list)
    #: True when the destination was already published by this same job, so
    #: this call read, sent and wrote nothing.
    already_published: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "JobReport":
        totals = data.get("totals", {})
        per_rank = [
            RankReport(rank=int(r.get("rank", i)), bytes_read=int(r.get("bytes_read", 0)),
                       bytes_written=int(r.get("bytes_written", 0)), bytes_sent=int(r.get("bytes_sent", 0)),
                       entries_received=int(r.get("entries_received", 0)),
                       peak_rss_bytes=int(r.get("peak_rss_bytes", 0)),
                       seconds={k: float(v) for k, v in (r.get("seconds") or {}).items()})
            for i, r in enumerate(data.get("per_rank", []))
        ]
        return cls(shape=tuple(data["shape"]), nnz=int(data["nnz"]), ranks=int(data["ranks"]),
                   source_shards=int(data["source_shards"]), destination_shards=int(data["destination_shards"]),
                   bytes_read=int(totals.get("bytes_read", 0)), bytes_written=int(totals.get("bytes_written", 0)),
                   bytes_sent=int(totals.get("bytes_sent", 0)), entries_sent=int(totals.get("entries_sent", 0)),
                   entries_kept_local=int(totals.get("entries_kept_local", 0)),
                   destination_shards_reused=int(totals.get("destination_shards_reused", 0)),
                   resumed=bool(data.get("resumed", False)), wall_seconds=float(data.get("wall_seconds", 0.0)),
                   seconds={k: float(v) for k, v in (data.get("seconds") or {}).items()}, per_rank=per_rank,
                   already_published=bool(data.get("already_published", False)), raw=data)
