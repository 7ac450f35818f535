"""Helpers for published destinations: is_published, read_report, load_matrix.

Local paths are read directly; ``s3://`` and ``gs://`` patterns are read
through ``mpi_reshard cat``, the program's own store drivers, so the same
credentials and endpoints apply (docs/operations.md, "Object stores")."""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Dict, Optional, Tuple

from .runner import ReshardError, control_path, default_report_path, find_binary, local_directory
from .spec import ShardingSpec


def _cat(url: str) -> Optional[bytes]:
    """An object's bytes through ``mpi_reshard cat``; None when it does not exist."""
    proc = subprocess.run([find_binary(), "cat", url], capture_output=True)
    if proc.returncode == 0:
        return proc.stdout
    message = proc.stderr.decode(errors="replace").strip().splitlines()
    line = message[-1] if message else "no output"
    if proc.returncode == 2 and line.startswith("mpi_reshard cat: no such object"):
        return None
    raise ReshardError(proc.returncode, line.removeprefix("mpi_reshard cat: "), "\n".join(message))


def _read(pattern: str, name: str) -> Optional[bytes]:
    """The control file ``name`` (e.g. ``_SUCCESS``) of the dataset ``pattern``."""
    if local_directory(pattern) is None:
        return _cat(control_path(pattern, name))
    local = pattern[len("file://"):] if pattern.startswith("file://") else pattern
    path = control_path(local, name)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def is_published(dst_pattern: str) -> bool:
    """True once the job that writes ``dst_pattern`` has published it
    (``<dst dir>/_SUCCESS``, or ``<file>._SUCCESS`` for a one-file dataset,
    exists). Readers must check this first. Works for
    local paths and for ``s3://``/``gs://`` URLs."""
    return _read(dst_pattern, "_SUCCESS") is not None


def read_report(dst_pattern: str) -> Dict[str, Any]:
    """The job's JSON summary: the report reshuffle() keeps beside the
    manifest (local destinations), or else the _SUCCESS record."""
    report = default_report_path(dst_pattern)
    if report and os.path.isfile(report):
        with open(report) as f:
            return json.load(f)
    success = _read(dst_pattern, "_SUCCESS")
    if success is None:
        raise FileNotFoundError(f"{dst_pattern} is not published: no report and no _SUCCESS")
    return json.loads(success)


def _shape_of(pattern: str, scheme: ShardingSpec) -> Optional[Tuple[int, int]]:
    if scheme.shape is not None:
        return scheme.shape
    manifest = _read(pattern, "_reshard/manifest.json")
    return tuple(json.loads(manifest)["shape"]) if manifest is not None else None


def load_matrix(pattern: str, scheme: ShardingSpec):
    """Reassembles a (small) sharded matrix into one scipy CSR matrix; for
    tests and notebooks. Needs numpy and scipy. The global shape comes from
    ``scheme.shape`` or the destination's manifest. ``s3://`` and ``gs://``
    patterns are read through ``mpi_reshard cat``."""
    import numpy as np
    import scipy.sparse as sp

    from .testing import Scheme, read_sharded

    shape = _shape_of(pattern, scheme)
    if shape is None:
        raise ValueError(f"cannot tell the shape of {pattern}: give ShardingSpec(shape=...) or load a "
                         "destination written by mpi_reshard")

    def remote_shard(url: str) -> bytes:
        content = _cat(url)
        if content is None:
            raise FileNotFoundError(f"missing shard {url}")
        return content

    reader = remote_shard if local_directory(pattern) is None else None
    rows, cols, data = read_sharded(pattern, Scheme.parse(scheme.to_cli()), shape, reader=reader)
    # Built directly rather than through COO, which would sum duplicates.
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))])
    return sp.csr_matrix((data[order], cols[order], indptr), shape=shape)
