"""Progress of a running job, as reshuffle() hands it to ``progress_cb``."""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union


@dataclass(frozen=True)
class Progress:
    """One progress event of the program (its ``--progress-json`` line).

    ``fraction`` of the whole job in [0, 1], non-decreasing; ``stage`` is
    ``plan``, ``read``, ``exchange``, ``write`` or ``done``; ``detail`` a line
    for people; ``elapsed_s`` seconds since the program started; ``eta_s``
    the estimated seconds left (None early on, when it would be a guess);
    ``entries`` what rank 0 has read (stage ``read``) or written (``write``)
    so far, and ``entries_per_s`` its rate in that stage (None elsewhere)."""

    fraction: float
    stage: str
    detail: str = ""
    elapsed_s: float = 0.0
    eta_s: Optional[float] = None
    entries: int = 0
    entries_per_s: Optional[float] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Progress":
        return cls(fraction=float(data["progress"]), stage=str(data.get("stage", "")),
                   detail=str(data.get("detail", "")), elapsed_s=float(data.get("elapsed_s") or 0.0),
                   eta_s=None if data.get("eta_s") is None else float(data["eta_s"]),
                   entries=int(data.get("entries") or 0),
                   entries_per_s=None if data.get("entries_per_s") is None else float(data["entries_per_s"]))


ProgressCallback = Union[Callable[[float], None], Callable[[Progress], None], str]


def wants_progress_object(callback: Callable[..., Any]) -> bool:
    """Whether ``callback``'s first parameter is annotated as a Progress
    (``def cb(p: Progress)``); a plain ``cb(fraction)`` gets a float."""
    try:
        parameters = list(inspect.signature(callback).parameters.values())
    except (TypeError, ValueError):
        return False
    if not parameters:
        return False
    annotation = parameters[0].annotation
    return annotation is Progress or annotation in ("Progress", "sparse_reshard.Progress")


class ProgressBar:
    """``progress_cb="bar"``: a tqdm bar when tqdm is installed, otherwise
    one line on stderr rewritten in place."""

    def __init__(self) -> None:
        try:
            from tqdm import tqdm  # Debian: python3-tqdm
        except ImportError:
            tqdm = None
        self._bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}] {postfix}") \
            if tqdm is not None else None
        self._last = 0.0

    def __call__(self, progress: Progress) -> None:
        if self._bar is not None:
            self._bar.update(100 * (progress.fraction - self._last))
            self._bar.set_postfix_str(f"{progress.stage}: {progress.detail}", refresh=True)
        else:
            eta = f", about {progress.eta_s:.0f} s left" if progress.eta_s is not None else ""
            sys.stderr.write(f"\r{progress.fraction:6.1%} {progress.stage:<8} {progress.detail}{eta}\033[K")
            sys.stderr.flush()
        self._last = progress.fraction

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()
