"""reshuffle(): runs mpi_reshard as a subprocess under mpirun or srun."""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from .progress import Progress, ProgressBar, ProgressCallback, wants_progress_object
from .report import JobReport
from .spec import ShardingSpec

Scheme = Union[ShardingSpec, str]

_STDERR_TAIL_LINES = 40
_TERMINATE_GRACE_SECONDS = 5.0


class ReshardError(RuntimeError):
    """mpi_reshard failed. ``exit_code`` follows the program's convention (2 bad
    input, 3 verification failed, 4 storage failure, 1 anything else; negative
    for a signal), ``message`` is its one-line error and ``stderr_tail`` the
    last lines it printed."""

    def __init__(self, exit_code: int, message: str, stderr_tail: str):
        super().__init__(f"mpi_reshard exited with {exit_code}: {message}")
        self.exit_code = exit_code
        self.message = message
        self.stderr_tail = stderr_tail


def find_binary() -> str:
    """RESHARD_BIN, then mpi_reshard on PATH, then this source tree's build/bin."""
    env = os.environ.get("RESHARD_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise ValueError(f"RESHARD_BIN={env} is not an executable file")
        return env
    on_path = shutil.which("mpi_reshard")
    if on_path:
        return on_path
    in_tree = Path(__file__).resolve().parents[2] / "build" / "bin" / "mpi_reshard"
    if in_tree.is_file() and os.access(in_tree, os.X_OK):
        return str(in_tree)
    raise ValueError("mpi_reshard not found: set RESHARD_BIN, put it on PATH, or build it (scripts/build.sh)")


def local_directory(pattern: str) -> Optional[str]:
    """The directory of a local shard pattern (the part before the first
    placeholder, up to its last '/'); None for an object-store URL."""
    if "://" in pattern and not pattern.startswith("file://"):
        return None
    path = pattern[len("file://"):] if pattern.startswith("file://") else pattern
    brace = path.find("{")
    return os.path.dirname(path[:brace] if brace >= 0 else path) or "."


def names_one_file(pattern: str) -> bool:
    """A pattern without {i}, {row} or {col} names one file (the `single` scheme)."""
    return not any(p in pattern for p in ("{i}", "{row}", "{col}"))


def control_path(pattern: str, name: str) -> str:
    """Where the control file ``name`` (``_SUCCESS``, ``_reshard/...``) of a
    dataset is: in its directory, or beside a one-file dataset under the
    file's name (``out/a.h5ad._SUCCESS``), as mpi_reshard writes them."""
    if names_one_file(pattern):
        return pattern + "." + name
    brace = pattern.find("{")
    return pattern[:pattern.rfind("/", 0, brace) + 1] + name


def default_report_path(dst_pattern: str) -> Optional[str]:
    """Where the wrapper keeps the job's report: beside the manifest."""
    if local_directory(dst_pattern) is None:
        return None
    path = dst_pattern[len("file://"):] if dst_pattern.startswith("file://") else dst_pattern
    return control_path(path, "_reshard/report.json")


def _launcher_command(launcher: str, num_ranks: int, mpi_args: Sequence[str]) -> List[str]:
    if launcher == "srun":
        # Debian's Open MPI starts under srun through PMIx; a site whose
        # Slurm says otherwise passes its own --mpi=... in mpi_args.
        mpi = [] if any(a.startswith("--mpi") for a in mpi_args) else ["--mpi=pmix"]
        return ["srun", f"--ntasks={num_ranks}", *mpi, *mpi_args]
    command = ["mpirun", "-np", str(num_ranks)]
    if num_ranks > (os.cpu_count() or 1):
        command.append("--oversubscribe")
    # mpirun binds each of two or fewer ranks to one core, and more to a
    # socket: a rank's threads would take turns on those, and the owner of a
    # hot shard could not deflate on the cores of ranks that are done. The
    # user's own --bind-to wins.
    if not any(a.startswith("--bind-to") for a in mpi_args):
        command += ["--bind-to", "none"]
    return command + list(mpi_args)


def _as_spec(value: Scheme, name: str) -> ShardingSpec:
    if isinstance(value, ShardingSpec):
        return value
    if isinstance(value, str):
        try:
            return ShardingSpec.from_cli(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    raise ValueError(f"{name} must be a ShardingSpec or a scheme string like 'rows:block=1000', got {value!r}")


def _without_launcher_banners(lines: Sequence[str]) -> List[str]:
    """mpirun/prterun print a multi-line notice between dashed rules (and
    lines of their own name) when a rank exits non-zero; it says nothing the
    program's own error does not."""
    kept: List[str] = []
    inside = False
    for line in lines:
        if line.startswith("----"):
            inside = not inside
        elif not inside and not line.startswith(("prterun", "mpirun")):
            kept.append(line)
    return kept


def _option_args(overwrite: bool, restart: bool, memory_limit: Union[int, str, None], compress: Optional[str],
                 threads: Optional[int]) -> List[str]:
    args: List[str] = []
    if overwrite:
        args.append("--overwrite")
    if restart:
        args.append("--restart")
    if memory_limit is not None:
        if isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, str)) or \
                (isinstance(memory_limit, int) and memory_limit < 1):
            raise ValueError(f"memory_limit must be a positive byte count or a size like '8GiB', got {memory_limit!r}")
        args += ["--memory-limit", str(memory_limit)]
    if compress is not None:
        if not isinstance(compress, str):
            raise ValueError(f"compress must be 'none', 'igzip[:LEVEL]' or 'deflate[:LEVEL]', got {compress!r}")
        args += ["--compress", compress]
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be an integer >= 0 (0: automatic), got {threads!r}")
        args += ["--threads", str(threads)]
    return args


def _session_members(session: int) -> List[int]:
    """PIDs in `session` (Linux /proc), the launcher included."""
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp session.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == session:
            members.append(int(entry))
    return members


def _signal_session(proc: subprocess.Popen, sig: int) -> None:
    # mpirun puts each rank in a process group of its own, so signalling
    # mpirun's group alone leaves the ranks to mpirun's forwarding, which
    # takes about a second: long enough for an interrupted job to publish.
    # Every process of the session the launcher leads is signalled at once.
    for pid in _session_members(proc.pid) or [proc.pid]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _kill_group(proc: subprocess.Popen) -> None:
    """Ends mpirun/srun and every rank it started: they share a session."""
    _signal_session(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=_TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    _signal_session(proc, signal.SIGKILL)
    proc.wait()


def reshuffle(src_pattern: str, dst_pattern: str, old_scheme: Scheme, new_scheme: Scheme, *,
              max_concurrency: int = 32, progress_cb: Optional[ProgressCallback] = None,
              overwrite: bool = False, restart: bool = False, memory_limit: Union[int, str, None] = None,
              compress: Optional[str] = None, threads: Optional[int] = None,
              num_ranks: Optional[int] = None, launcher: Optional[str] = None,
              mpi_args: Sequence[str] = (), report_path: Optional[str] = None,
              extra_args: Sequence[str] = (), env: Optional[Dict[str, str]] = None,
              timeout: Optional[float] = None, progress_object: Optional[bool] = None) -> JobReport:
    """Re-shards the matrix under ``src_pattern`` into ``dst_pattern``.

    Runs ``mpi_reshard`` under ``srun`` inside a Slurm allocation
    (``SLURM_JOB_ID`` set), otherwise under ``mpirun -np N`` with N =
    ``num_ranks``, else ``new_scheme.num_workers``, else min(4, CPU count).
    ``old_scheme`` and ``new_scheme`` are :class:`ShardingSpec` objects or
    the CLI's scheme text (``"rows:block=1000"``, docs/schemes.md).

    Returns the job's :class:`JobReport` when the result is published
    (``<dst dir>/_SUCCESS``; ``<file>._SUCCESS`` for a one-file destination);
    the report is also kept at ``report_path``, by default
    ``<dst dir>/_reshard/report.json`` (``<file>._reshard/report.json``) for a
    local destination. Raises
    :class:`ReshardError` when the program fails (the destination stays
    resumable: call again with the same arguments) and ``ValueError`` for bad
    arguments, before anything is launched. Nothing is created at the
    destination before the program accepts the job.

    ``overwrite=True`` replaces what the destination holds (``--overwrite``);
    ``restart=True`` discards an earlier unfinished run's manifest
    (``--restart``); ``memory_limit`` is bytes per rank or a size such as
    ``"8GiB"``; ``compress`` is ``"none"``, ``"igzip"`` / ``"igzip:LEVEL"``
    (the default, ``igzip:1``) or ``"deflate"`` / ``"deflate:LEVEL"``; ``threads`` is threads per rank (0: automatic).

    ``progress_cb(fraction)`` is called from the calling thread (this function
    reads the program's progress while it waits) with non-decreasing
    fractions in [0, 1], the last one exactly 1.0 on success. A callback whose
    first parameter is annotated :class:`Progress` (``def cb(p: Progress)``),
    or any callback with ``progress_object=True``, gets a :class:`Progress`
    instead: fraction, stage, detail, seconds elapsed and left, and rank 0's
    entries per second; it sees every event, the last one stage ``"done"``.
    ``progress_cb="bar"`` shows a progress bar on stderr (tqdm when it is
    installed, a plain line otherwise). If the callback raises, or on
    KeyboardInterrupt, the whole MPI job is terminated and the exception
    propagates.

    ``max_concurrency`` bounds in-flight storage requests per rank (S3/GCS;
    the program's ``--max-concurrency``).

    ``extra_args`` are passed to the program as they are, e.g.
    ``["--memory-limit", "8GiB", "--scratch-dir", "/local/scratch", "--threads", "16"]``
    (docs/operations.md).

    >>> from sparse_reshard import ShardingSpec, reshuffle
    >>> reshuffle("data/m/shard_{i}.npz", "data/m_cols/shard_{i}.npz",
    ...           ShardingSpec.row_blocks(250_000), ShardingSpec.col_blocks(125_000),
    ...           progress_cb=lambda f: print(f"{f:.0%}"))  # doctest: +SKIP
    """
    old_scheme = _as_spec(old_scheme, "old_scheme")
    new_scheme = _as_spec(new_scheme, "new_scheme")
    options = _option_args(overwrite, restart, memory_limit, compress, threads)
    for name, pattern, spec in (("src_pattern", src_pattern, old_scheme), ("dst_pattern", dst_pattern, new_scheme)):
        one_file = spec.to_cli().split(",")[0] == "single"  # a pattern without {i} names the one file
        if not isinstance(pattern, str) or not (one_file or any(p in pattern for p in ("{i}", "{row}", "{col}"))):
            raise ValueError(f"{name} must be a string with {{i}} (or {{row}}/{{col}}), got {pattern!r}")
    if src_pattern == dst_pattern:
        raise ValueError("dst_pattern must differ from src_pattern")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
    wants_bar = isinstance(progress_cb, str) and progress_cb == "bar"
    if progress_cb is not None and not wants_bar and not callable(progress_cb):
        raise ValueError(f"progress_cb must be callable or 'bar', got {progress_cb!r}")
    ranks = num_ranks or new_scheme.num_workers or min(4, os.cpu_count() or 1)
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"num_ranks must be a positive integer, got {num_ranks!r}")
    if launcher is None:
        launcher = "srun" if os.environ.get("SLURM_JOB_ID") else "mpirun"
    if launcher not in ("srun", "mpirun"):
        raise ValueError(f"launcher must be 'srun' or 'mpirun', got {launcher!r}")
    binary = find_binary()
    kept_report = report_path or default_report_path(dst_pattern)
    # The program writes its report to a private folder; it is copied beside
    # the manifest only once the job is published, so a refused job leaves
    # no folder behind at the destination.
    with tempfile.TemporaryDirectory(prefix="reshard-report-") as private:
        written_report = os.path.join(private, "report.json")
        command = _launcher_command(launcher, ranks, mpi_args) + [
            binary, "--src", src_pattern, "--old-scheme", old_scheme.to_cli(),
            "--dst", dst_pattern, "--new-scheme", new_scheme.to_cli(), "--progress-json",
            "--max-concurrency", str(max_concurrency), *options, *extra_args, "--report", written_report]
        bar = ProgressBar() if wants_bar else None
        try:
            _run(command, env, timeout, bar or progress_cb,
                 progress_object=bar is not None or bool(progress_object) or
                 (progress_object is None and callable(progress_cb) and wants_progress_object(progress_cb)))
        finally:
            if bar is not None:
                bar.close()
        with open(written_report) as f:
            text = f.read()
    job = JobReport.from_json(json.loads(text))
    # A call that found the job already published did nothing: the report
    # of the run that did the work stays.
    if kept_report and not (job.already_published and os.path.exists(kept_report)):
        os.makedirs(os.path.dirname(os.path.abspath(kept_report)), exist_ok=True)
        with open(kept_report, "w") as f:
            f.write(text)
    return job


def _run(command: List[str], env: Optional[Dict[str, str]], timeout: Optional[float],
         progress_cb: Optional[Callable[..., None]], progress_object: bool = False) -> None:
    run_env = dict(os.environ)
    if os.geteuid() == 0:
        run_env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        run_env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # When a rank exits non-zero, Open MPI's mpirun waits this long (1 s, per
    # step of its kill sequence) before it returns, even when every rank has
    # already exited: a refused job took 2.4 s instead of 0.4 s. The program
    # needs no grace period: a killed rank leaves nothing a rerun cannot
    # finish (docs/commit-protocol.md).
    run_env.setdefault("OMPI_MCA_odls_base_sigkill_timeout", "0")
    run_env.update(env or {})

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env,
                            start_new_session=True, bufsize=1)
    stderr_tail: collections.deque = collections.deque(maxlen=_STDERR_TAIL_LINES)
    error_lines: List[str] = []

    def drain_stderr() -> None:
        for line in proc.stderr:
            line = line.rstrip("\n")
            stderr_tail.append(line)
            if line.startswith("mpi_reshard:") and "fault injected" not in line:
                error_lines.append(line[len("mpi_reshard:"):].strip())

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    timer = threading.Timer(timeout, _kill_group, args=(proc,)) if timeout else None
    if timer:
        timer.start()
    last = 0.0
    done: Optional[Progress] = None
    try:
        for line in proc.stdout:
            if not line.startswith('{"'):
                continue
            try:
                event = Progress.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
            fraction = min(1.0, max(last, event.fraction))
            event = dataclasses.replace(event, fraction=fraction)
            if fraction >= 1.0:
                done = event  # delivered once the job is known to have succeeded
            elif progress_cb is not None and progress_object:
                progress_cb(event)
            elif progress_cb is not None and fraction > last:
                progress_cb(fraction)
            last = fraction
        proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        if timer:
            timer.cancel()
        reader.join(timeout=_TERMINATE_GRACE_SECONDS)
    if proc.returncode != 0:
        tail = _without_launcher_banners(stderr_tail)
        message = error_lines[0] if error_lines else (tail[-1] if tail else "no output")
        raise ReshardError(proc.returncode, message, "\n".join(tail))
    if progress_cb is not None:
        progress_cb((done or Progress(1.0, "done")) if progress_object else 1.0)
