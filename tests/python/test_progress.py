"""Progress as a user sees it: the Python callback forms (a fraction, a
Progress object chosen by annotation or by keyword, a bar) and the CLI's
--progress and --progress-json lines, whose keys docs/operations.md lists."""
import builtins
import json
import os
import re
import subprocess

import pytest

from conftest import MPI_ENV, binary
from sparse_reshard import Progress, reshuffle
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

OLD, NEW = "rows:block=4000", "cols:block=500"
SHAPE = (20000, 3000)


@pytest.fixture(autouse=True)
def _binary_and_mpi(monkeypatch):
    monkeypatch.setenv("RESHARD_BIN", binary())
    for key, value in MPI_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    src = str(root / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*SHAPE, 300000, seed=8), Scheme.parse(OLD), src)
    return root, src


def check_events(events):
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions), "progress went backwards"
    assert events[-1].fraction == 1.0 and events[-1].stage == "done"
    assert [e for e in events if e.fraction == 1.0] == [events[-1]], "1.0 comes once, last"
    stages = [e.stage for e in events]
    assert {"plan", "read", "write", "done"} <= set(stages), stages
    elapsed = [e.elapsed_s for e in events]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0
    reading = [e for e in events if e.stage == "read"]
    assert [e.entries for e in reading] == sorted(e.entries for e in reading) and reading[-1].entries > 0
    assert any(e.entries_per_s for e in reading), "a rate once a read has taken time"
    assert any(e.eta_s is not None for e in events if 0.05 <= e.fraction < 1.0)
    assert all(e.eta_s is None for e in events if e.fraction < 0.05 or e.fraction == 1.0)


def test_a_callback_annotated_progress_gets_objects(source, tmp_path):
    _, src = source
    events = []

    def record(p: Progress):
        events.append(p)

    job = reshuffle(src, str(tmp_path / "a" / "s_{i}.npz"), OLD, NEW, num_ranks=2, progress_cb=record)
    assert all(isinstance(e, Progress) for e in events)
    check_events(events)
    assert job.nnz > 0


def test_progress_object_keyword_and_plain_fractions(source, tmp_path):
    _, src = source
    objects, fractions = [], []
    reshuffle(src, str(tmp_path / "b" / "s_{i}.npz"), OLD, NEW, num_ranks=2, progress_cb=objects.append,
              progress_object=True)
    check_events(objects)
    reshuffle(src, str(tmp_path / "c" / "s_{i}.npz"), OLD, NEW, num_ranks=2, progress_cb=fractions.append)
    assert all(isinstance(f, float) for f in fractions)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions.count(1.0) == 1


def test_bar_with_tqdm(source, tmp_path, capsys):
    pytest.importorskip("tqdm")
    _, src = source
    reshuffle(src, str(tmp_path / "d" / "s_{i}.npz"), OLD, NEW, num_ranks=2, progress_cb="bar")
    err = capsys.readouterr().err
    assert "100%" in err and "done: published" in err, err[-500:]


def test_bar_without_tqdm_is_a_plain_line(source, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm":
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    _, src = source
    reshuffle(src, str(tmp_path / "e" / "s_{i}.npz"), OLD, NEW, num_ranks=2, progress_cb="bar")
    err = capsys.readouterr().err
    assert "\r100.0% done     published" in err, err[-300:]
    assert re.search(r"\r *\d+\.\d% read +read \d/\d source shards on rank 0", err), err[-500:]


def test_progress_cb_must_be_callable_or_bar(source, tmp_path):
    _, src = source
    with pytest.raises(ValueError, match="progress_cb must be callable or 'bar'"):
        reshuffle(src, str(tmp_path / "f" / "s_{i}.npz"), OLD, NEW, progress_cb="tqdm")
    assert not (tmp_path / "f").exists()


def run_cli(src, dst, *flags):
    cmd = ["mpirun", "-np", "2", "--oversubscribe", binary(), "--src", src, "--old-scheme", OLD, "--dst", dst,
           "--new-scheme", NEW, *flags]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **MPI_ENV), timeout=300)


def test_progress_json_keys_and_rounding(source, tmp_path):
    _, src = source
    run = run_cli(src, str(tmp_path / "g" / "s_{i}.npz"), "--progress-json", "--quiet")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines, "no progress lines"
    assert all(set(line) == {"progress", "stage", "detail", "elapsed_s", "eta_s", "entries", "entries_per_s"}
               for line in lines), lines[0]
    for line in lines:
        assert line["progress"] == round(line["progress"], 4)
        assert line["elapsed_s"] == round(line["elapsed_s"], 2)
        assert line["eta_s"] is None or line["eta_s"] == round(line["eta_s"], 1)
        assert line["entries_per_s"] is None or isinstance(line["entries_per_s"], int)
    assert lines[-1]["progress"] == 1.0 and lines[-1]["stage"] == "done"
    assert "resharded" not in run.stdout, "--quiet prints no summary"


def test_verbose_prints_progress_lines_and_stage_seconds(source, tmp_path):
    _, src = source
    run = run_cli(src, str(tmp_path / "h" / "s_{i}.npz"), "-v")
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.stderr.splitlines() if line.startswith("progress ")]
    assert any(re.search(r"entries/s on rank 0; \d+\.\d+ s elapsed, about \d+\.\d+ s left$", p) for p in progress), \
        progress
    assert progress[-1].startswith("progress 100.0% done")
    assert re.search(r"^  seconds on rank 0: .*read \d+\.\d\d s", run.stdout, re.M), run.stdout
    # Sizes and times in the summary are for people.
    assert re.search(r"read [\d.]+ (KiB|MiB), wrote [\d.]+ (KiB|MiB), sent [\d.]+ (B|KiB|MiB) between ranks",
                     run.stdout), run.stdout
    assert re.search(r"wall time \d+\.\d\d s, peak RSS of rank 0 [\d.]+ MiB", run.stdout), run.stdout
    both = run_cli(src, str(tmp_path / "i" / "s_{i}.npz"), "-v", "-q")
    assert both.returncode == 2 and "contradict" in both.stderr
    assert not (tmp_path / "i").exists()
