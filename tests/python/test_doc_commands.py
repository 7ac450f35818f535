"""Every command the docs show, run as it is shown: the fenced blocks of
README.md, python/README.md, scripts/slurm/README.md and docs/*.md are
extracted from the Markdown, so the docs cannot drift from the program.

- Commands are run with bash in a fresh folder holding the docs' sample
  source, data/m/shard_{i}.npz (rows:block=250000, a sparse 1Mx500k
  matrix), and for `verify` lines data/m_cols/shard_{i}.npz published by
  the README's job; /lustre/ paths are that folder's lustre/. build/bin and
  the repository's python/ are on the paths; scripts/ run from the
  repository.
- Synopsis lines (with PATTERN, <ranks>, [options] or ...) are checked
  against --help: every flag they show must exist. An optional [--flag] in
  an otherwise runnable line is run both without and with it.
- Python blocks run as scripts; `rows, cols, data` (which docs/formats.md's
  example takes as given) are the sample's global COO arrays.
- What cannot run here is listed in NOT_RUN with the reason; a command that
  is neither run nor listed fails the test."""
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import MPI_ENV, ROOT, binary
from sparse_reshard.testing import Scheme, write_sharded

DOCS = ["README.md", "python/README.md", "scripts/slurm/README.md",
        *sorted(os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / "docs" / "*.md")))]
COMMAND_WORDS = ("mpirun", "mpi_reshard", "build/bin/", "scripts/", "bench/", "sbatch", "squeue", "tail", "salloc",
                 "export", "python3")
NOT_RUN = {
    "scripts/test.sh": "it is what runs this test",
    "bench/run.sh": "the benchmark; scripts/test.sh runs bench/run.sh --quick",
    "bench/ab.sh": "compares two builds on the sources of an earlier full bench/run.sh (its --work folder)",
    "sbatch ": "needs a Slurm cluster; tests/slurm/run_slurm_test.sh runs scripts/slurm/reshard.sbatch under slurmctld",
    "squeue ": "needs a Slurm cluster (as above)",
    "tail -f ": "follows a Slurm job's log (as above)",
    "salloc ": "needs a Slurm cluster; the Python under it is run here",
    "export RESHARD_": "the sbatch script's settings; RESHARD_DST is set here for the verify line that follows",
}
# Placeholders of usage lines for programs other than mpi_reshard, and what
# stands in for them here.
STAND_INS = {"[ENTRIES]": "200000", "FILE.npz…": "data/m/shard_0.npz", "[GIB]": "0.125", "[MIB]": "8",
             "[PIECES]": "4"}
SHAPE = (1_000_000, 500_000)


def fenced_blocks():
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S):
            yield doc, m.group(1), m.group(2)


def logical_lines(body):
    """Lines with backslash continuations joined and comments dropped; a
    `python3 - <<'PY'` heredoc comes back whole."""
    lines = body.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        while line.endswith("\\") and k + 1 < len(lines):
            k += 1
            line = line[:-1] + " " + lines[k].strip()
        heredoc = re.search(r"<<'(\w+)'$", line)
        if heredoc:
            end = lines.index(heredoc.group(1), k + 1)
            yield line + "\n" + "\n".join(lines[k + 1:end]) + "\n" + heredoc.group(1)
            k = end + 1
            continue
        yield re.sub(r"\s+#\s.*$", "", line).strip()
        k += 1


def is_synopsis(line):
    return bool(re.search(r"<\w+>|\bPATTERN\b|\bSCHEME\b|\.\.\.", line))


def is_output(line):
    return bool(re.match(r"^mpi_reshard( verify)?: ", line))


def classify():
    runs, synopses, pythons, skipped = [], [], [], []
    for doc, lang, body in fenced_blocks():
        if lang == "python":
            pythons.append((doc, body))
            continue
        if lang:
            continue
        for line in logical_lines(body):
            if not line.startswith(COMMAND_WORDS) or is_output(line):
                continue
            reason = next((why for prefix, why in NOT_RUN.items() if line.startswith(prefix)), None)
            if reason:
                skipped.append((doc, line))
            elif line.startswith("python3 - <<"):
                pythons.append((doc, line.split("\n", 1)[1].rsplit("\n", 1)[0]))
            elif any(s in line for s in STAND_INS):
                for placeholder, value in STAND_INS.items():
                    line = line.replace(placeholder, value)
                runs.append((doc, line))
            elif is_synopsis(line):
                synopses.append((doc, line))
            elif "[--" in line:
                runs.append((doc, re.sub(r"\s*\[(--[\w-]+)\]", "", line)))
                runs.append((doc, re.sub(r"\s*\[(--[\w-]+)\]", r" \1", line)))
            else:
                runs.append((doc, line))
    return runs, synopses, pythons, skipped


RUNS, SYNOPSES, PYTHONS, SKIPPED = classify()


def test_the_docs_show_commands_of_every_kind():
    # A parser that found nothing would make the other tests vacuous.
    assert len(RUNS) >= 5 and len(SYNOPSES) >= 2 and len(PYTHONS) >= 4, (RUNS, SYNOPSES, PYTHONS)
    assert {doc for doc, _ in RUNS + PYTHONS} >= {"README.md", "python/README.md", "docs/commit-protocol.md"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    import numpy as np
    import scipy.sparse as sp

    root = tmp_path_factory.mktemp("docs-sample")
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(0, SHAPE[0], 20000), rng.integers(0, SHAPE[1], 20000)
    m = sp.coo_matrix((rng.standard_normal(20000), (rows, cols)), shape=SHAPE).tocsr()
    write_sharded(m, Scheme.parse("rows:block=250000"), str(root / "data" / "m" / "shard_{i}.npz"))
    shutil.copytree(root / "data" / "m", root / "lustre" / "m")
    return root


def publish_sample(work):
    """data/m_cols as the README's job writes it, for the commands that read
    a published destination."""
    subprocess.run(["mpirun", "-np", "2", binary(), "--src", "data/m/shard_{i}.npz", "--old-scheme",
                    "rows:block=250000", "--dst", "data/m_cols/shard_{i}.npz", "--new-scheme", "cols:block=125000",
                    "-q"], cwd=work, env=dict(os.environ, **MPI_ENV), check=True)


@pytest.fixture
def workdir(sample, tmp_path):
    """A fresh copy of the sample per command, so commands cannot see each
    other's output."""
    work = tmp_path / "work"
    shutil.copytree(sample, work, symlinks=True)
    (work / "build" / "bin").mkdir(parents=True)
    for tool in ("mpi_reshard", "stage_bench", "deflate_bench", "first_touch", "exchange_probe"):
        os.symlink(os.path.join(os.path.dirname(binary()), tool), work / "build" / "bin" / tool)
    return work


def environment(work):
    return dict(os.environ, **MPI_ENV,
                PATH=f"{work}/build/bin:{os.environ['PATH']}",
                PYTHONPATH=f"{ROOT / 'python'}:{os.environ.get('PYTHONPATH', '')}",
                RESHARD_DST="data/m_cols/shard_{i}.npz", DEMO_NNZ="200000", DEMO_DIR=str(work / "demo"))


@pytest.mark.parametrize("doc,line", RUNS, ids=[f"{d}:{line[:60]}" for d, line in RUNS])
def test_shell_command_runs(workdir, doc, line):
    if " verify " in f" {line} ":
        publish_sample(workdir)
    # The repository's scripts run from the repository (they cd to it).
    line = re.sub(r"^scripts/", f"{ROOT}/scripts/", line)
    proc = subprocess.run(["bash", "-c", line], cwd=workdir, env=environment(workdir), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{doc}: {line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


@pytest.mark.parametrize("doc,line", SYNOPSES, ids=[f"{d}:{line[:60]}" for d, line in SYNOPSES])
def test_synopsis_flags_exist(doc, line):
    subcommand = next((word for word in ("verify", "plan") if f" {word} " in f" {line} "), None)
    helptext = subprocess.run([binary(), *([subcommand] if subcommand else []), "--help"], capture_output=True,
                              text=True, env=dict(os.environ, **MPI_ENV)).stdout
    known = set(re.findall(r"--[\w-]+", helptext)) | set(re.findall(r"(?<![\w-])-\w\b", helptext))
    shown = set(re.findall(r"(?<![\w-])--?[a-z][\w-]*", line.split("mpi_reshard", 1)[-1]))
    assert shown, line
    assert shown <= known, f"{doc}: flags not in --help: {sorted(shown - known)}"
    if doc == "docs/operations.md" and subcommand is None:
        # The full usage line: every flag of --help is on it, by either name.
        long_of = dict(re.findall(r"-(\w) \[ (--[\w-]+) \]", helptext))
        named = {long_of.get(flag[1:], flag) for flag in shown}
        options = re.findall(r"^\s+(?:-\w \[ )?(--[\w-]+)", helptext, re.M)
        missing = {f for f in options if f not in ("--help", "--version")} - named
        assert not missing, f"{doc}: the usage line leaves out {sorted(missing)}"


@pytest.mark.parametrize("doc,code", PYTHONS, ids=[f"{d}:{i}" for i, (d, _) in enumerate(PYTHONS)])
def test_python_example_runs(workdir, doc, code):
    prelude = ("from sparse_reshard.testing import Scheme as _Scheme, read_sharded as _read\n"
               f"rows, cols, data = _read('data/m/shard_{{i}}.npz', _Scheme.parse('rows:block=250000'), {SHAPE})\n")
    script = prelude + code.replace("/lustre/", f"{workdir}/lustre/")
    proc = subprocess.run([sys.executable, "-c", script], cwd=workdir, env=environment(workdir),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{doc}:\n{code}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
