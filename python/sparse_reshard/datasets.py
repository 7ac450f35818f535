"""Helpers for published destinations: is_published, read_report, load_matrix."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

from .runner import default_report_path, local_directory
from .spec import ShardingSpec


def _directory(pattern: str) -> str:
    directory = local_directory(pattern)
    if directory is None:
        raise ValueError(f"only local paths are supported here, got {pattern!r}")
    return directory


def is_published(dst_pattern: str) -> bool:
    """True once the job that writes ``dst_pattern`` has published it
    (``<dst dir>/_SUCCESS`` exists). Readers must check this first."""
    return os.path.isfile(os.path.join(_directory(dst_pattern), "_SUCCESS"))


def read_report(dst_pattern: str) -> Dict[str, Any]:
    """The job's JSON summary: the report reshuffle() keeps beside the
    manifest, or else the _SUCCESS record."""
    report = default_report_path(dst_pattern)
    if report and os.path.isfile(report):
        with open(report) as f:
            return json.load(f)
    success = os.path.join(_directory(dst_pattern), "_SUCCESS")
    if not os.path.isfile(success):
        raise FileNotFoundError(f"{dst_pattern} is not published: no report and no {success}")
    with open(success) as f:
        return json.load(f)


def _shape_of(pattern: str, scheme: ShardingSpec) -> Optional[Tuple[int, int]]:
    if scheme.shape is not None:
        return scheme.shape
    manifest = os.path.join(_directory(pattern), "_reshard", "manifest.json")
    if os.path.isfile(manifest):
        with open(manifest) as f:
            return tuple(json.load(f)["shape"])
    return None


def load_matrix(pattern: str, scheme: ShardingSpec):
    """Reassembles a (small) sharded matrix into one scipy CSR matrix; for
    tests and notebooks. Needs numpy and scipy. The global shape comes from
    ``scheme.shape`` or the destination's manifest."""
    import scipy.sparse as sp

    from .testing import Scheme, read_sharded

    shape = _shape_of(pattern, scheme)
    if shape is None:
        raise ValueError(f"cannot tell the shape of {pattern}: give ShardingSpec(shape=...) or load a "
                         "destination written by mpi_reshard")
    import numpy as np

    rows, cols, data = read_sharded(pattern, Scheme.parse(scheme.to_cli()), shape)
    # Built directly rather than through COO, which would sum duplicates.
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))])
    return sp.csr_matrix((data[order], cols[order], indptr), shape=shape)
