"""plan(): what a reshard would do, before running it (``mpi_reshard plan``).

>>> from sparse_reshard import plan
>>> p = plan("data/m/shard_{i}.npz", "rows:block=250000", "cols:block=62500",
...          balance="nnz")  # doctest: +SKIP
>>> p.skew.imbalance, p.proposal.scheme  # doctest: +SKIP
(6.21, ShardingSpec('cols:ranges=0,127,293,...'))
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .runner import ReshardError, Scheme, _as_spec, _launcher_command, _without_launcher_banners, find_binary
from .spec import ShardingSpec


@dataclass(frozen=True)
class Skew:
    """Entries per shard summarised; ``imbalance`` is max/mean - 1."""

    shards: int
    min: int
    median: int
    mean: float
    max: int
    imbalance: float
    hot_over_2x_mean: List[int]
    hot_over_5x_median: List[int]

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Skew":
        return cls(shards=int(data["shards"]), min=int(data["min"]), median=int(data["median"]),
                   mean=float(data["mean"]), max=int(data["max"]), imbalance=float(data["imbalance"]),
                   hot_over_2x_mean=[int(d) for d in data["hot_over_2x_mean"]],
                   hot_over_5x_median=[int(d) for d in data["hot_over_5x_median"]])


@dataclass(frozen=True)
class Proposal:
    """Balanced boundaries: ``scheme`` is ready to pass as the new scheme."""

    scheme: ShardingSpec
    balance: str
    skew: Skew
    entries: List[int]
    load_before: List[float]
    load_after: List[float]


@dataclass(frozen=True)
class PlanReport:
    """The figures ``mpi_reshard plan --format json`` prints (docs/operations.md)."""

    shape: Tuple[int, int]
    nnz: int
    source_shards: int
    scheme: ShardingSpec
    entries: List[int]
    bytes: List[int]
    skew: Skew
    fraction_changing_shard: float
    ranks: int
    entries_crossing_ranks: int
    bytes_crossing_ranks: int
    memory_least_bytes: int
    memory_in_memory_bytes: int
    memory_limit_bytes: int
    fits: bool
    proposal: Optional[Proposal] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "PlanReport":
        dst, move, memory = data["destination"], data["movement"], data["memory"]
        proposal = None
        if "proposal" in data:
            p = data["proposal"]
            proposal = Proposal(scheme=ShardingSpec.from_cli(p["scheme"]), balance=p["balance"], skew=Skew.from_json(p),
                                entries=[int(n) for n in p["entries"]],
                                load_before=[float(x) for x in p["load_before"]["per_shard"]],
                                load_after=[float(x) for x in p["load_after"]["per_shard"]])
        return cls(shape=(int(data["source"]["shape"][0]), int(data["source"]["shape"][1])),
                   nnz=int(data["source"]["nnz"]), source_shards=int(data["source"]["shards"]),
                   scheme=ShardingSpec.from_cli(dst["scheme"]), entries=[int(n) for n in dst["entries"]],
                   bytes=[int(n) for n in dst["bytes"]], skew=Skew.from_json(dst),
                   fraction_changing_shard=float(move["fraction_changing_shard"]), ranks=int(move["ranks"]),
                   entries_crossing_ranks=int(move["entries_crossing_ranks"]),
                   bytes_crossing_ranks=int(move["bytes_crossing_ranks"]),
                   memory_least_bytes=int(memory["least_bytes_per_rank"]),
                   memory_in_memory_bytes=int(memory["in_memory_bytes_per_rank"]),
                   memory_limit_bytes=int(memory["limit_bytes"]), fits=bool(memory["fits"]), proposal=proposal,
                   raw=data)


def plan(src_pattern: str, old_scheme: Scheme, new_scheme: Scheme, *, balance: Optional[str] = None,
         shards: Optional[int] = None, weights: Union[str, os.PathLike, Sequence[float], None] = None,
         ranks: Optional[int] = None, num_ranks: int = 1, memory_limit: Union[int, str, None] = None,
         compress: Optional[str] = None, dst_pattern: Optional[str] = None, timeout: Optional[float] = 600,
         env: Optional[Dict[str, str]] = None) -> PlanReport:
    """Surveys the source and returns the figures of a reshard to ``new_scheme``.

    ``balance`` (``"nnz"``, ``"bytes"``, ``"weight"``, ``"weighted-nnz"``)
    asks for a proposal of ``shards`` ranges along the new scheme's axis;
    ``weights`` is a forecast of load per row or column: a path (.npy or CSV
    ``index,weight``) or a sequence of numbers. ``ranks`` is the -np the job
    would run on (default ``num_ranks``); ``num_ranks`` > 1 runs the survey
    itself under mpirun. Raises :class:`ReshardError` with the program's
    one-line error and exit code when it refuses.
    """
    old = _as_spec(old_scheme, "old_scheme")
    new = _as_spec(new_scheme, "new_scheme")
    if isinstance(num_ranks, bool) or not isinstance(num_ranks, int) or num_ranks < 1:
        raise ValueError(f"num_ranks must be an integer >= 1, got {num_ranks!r}")
    args = [find_binary(), "plan", "--src", src_pattern, "--old-scheme", old.to_cli(), "--new-scheme", new.to_cli(),
            "--format", "json", "--ranks", str(ranks if ranks is not None else num_ranks)]
    if balance is not None:
        args += ["--balance", balance]
    if shards is not None:
        args += ["--shards", str(shards)]
    if memory_limit is not None:
        args += ["--memory-limit", str(memory_limit)]
    if compress is not None:
        args += ["--compress", compress]
    if dst_pattern is not None:
        args += ["--dst", dst_pattern]
    with tempfile.TemporaryDirectory(prefix="reshard-plan-") as scratch:
        if weights is not None:
            if isinstance(weights, (str, os.PathLike)):
                path = os.fspath(weights)
            else:
                path = os.path.join(scratch, "weights.csv")
                with open(path, "w") as f:
                    f.writelines(f"{i},{float(w)!r}\n" for i, w in enumerate(weights))
            args += ["--weights", path]
        command = args if num_ranks == 1 else _launcher_command("mpirun", num_ranks, []) + args
        run_env = dict(os.environ)
        if os.geteuid() == 0:
            run_env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            run_env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        run_env.update(env or {})
        proc = subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=timeout)
    if proc.returncode != 0:
        lines = _without_launcher_banners(proc.stderr.splitlines())
        errors = [line.split(":", 1)[1].strip() for line in lines if line.startswith("mpi_reshard plan:")]
        message = errors[0] if errors else (lines[-1] if lines else "no output")
        raise ReshardError(proc.returncode, message, "\n".join(lines[-20:]))
    return PlanReport.from_json(json.loads(proc.stdout))
