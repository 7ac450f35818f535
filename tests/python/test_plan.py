"""mpi_reshard plan against figures computed independently with numpy/scipy
from the same matrix, and its proposals checked by resharding with them."""
import itertools
import os
import subprocess
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import MPI_ENV, binary
from sparse_reshard import ReshardError, ShardingSpec, plan
from sparse_reshard.testing import Scheme, read_sharded, render, skewed_matrix, write_sharded

SHAPE = (3000, 800)


@pytest.fixture(scope="module")
def matrix():
    return skewed_matrix(*SHAPE, 60000, seed=5)


def coords(matrix):
    coo = matrix.tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def expected_entries(matrix, new_text):
    rows, cols = coords(matrix)
    new = Scheme.parse(new_text)
    return np.bincount(new.shard_of(rows, cols, SHAPE), minlength=new.shard_count(SHAPE)).tolist()


def expected_changing(matrix, old_text, new_text):
    """Entries whose shard is not the same file after: a different box under
    block schemes, a different index under the same hashing."""
    rows, cols = coords(matrix)
    old, new = Scheme.parse(old_text), Scheme.parse(new_text)
    src = old.shard_of(rows, cols, SHAPE)
    dst = new.shard_of(rows, cols, SHAPE)
    if old.hash or new.hash:
        same = (old.hash == new.hash and old.axis == new.axis and old.seed == new.seed)
        return int(np.count_nonzero(src != dst)) if same else len(rows)
    src_boxes = {s: old.box(s, SHAPE) for s in np.unique(src)}
    dst_boxes = {d: new.box(d, SHAPE) for d in np.unique(dst)}
    stays = np.array([src_boxes[s] == dst_boxes[d] for s, d in zip(src, dst)], dtype=bool)
    return int(np.count_nonzero(~stays))


CASES = [
    ("rows:block=400", "cols:block=100"),
    ("rows:block=400", "rows:hash=jump,shards=5"),
    ("cols:block=100,layout=csc", "grid:block=700x300"),
    ("rows:hash=jump,shards=6", "rows:hash=jump,shards=7"),
    ("rows:block=400", "rows:ranges=0,10,400,1500"),
    ("rows:block=400", "rows:block=400,layout=csc"),
    ("rows:block=400", "cols:hash=mix,shards=3"),
]


@pytest.mark.parametrize("old_text,new_text", CASES)
def test_entries_per_shard_and_movement_match_numpy_on_1_and_3_ranks(tmp_path, matrix, old_text, new_text):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(matrix, Scheme.parse(old_text), src, fmt=Scheme.parse(old_text).layout)
    want = expected_entries(matrix, new_text)
    changing = expected_changing(matrix, old_text, new_text)
    reports = [plan(src, old_text, new_text, num_ranks=n, ranks=3) for n in (1, 3)]
    for report in reports:
        assert report.entries == want
        assert report.nnz == matrix.nnz
        assert report.shape == SHAPE
        assert report.fraction_changing_shard == pytest.approx(changing / matrix.nnz)
        mean = np.mean(want)
        assert report.skew.max == max(want)
        assert report.skew.imbalance == pytest.approx(max(want) / mean - 1)
        assert report.skew.hot_over_2x_mean == [d for d, n in enumerate(want) if n > 2 * mean]
    new = Scheme.parse(new_text)
    if new.hash:
        # The hottest line of the hashed axis: no bucket can be smaller.
        rows, cols = coords(matrix)
        counts = np.bincount(rows if new.axis == "rows" else cols, minlength=SHAPE[0 if new.axis == "rows" else 1])
        for report in reports:
            line = report.raw["largest_line"]
            assert (line["axis"], line["id"], line["entries"]) == (new.axis, int(counts.argmax()), int(counts.max()))
    # The same figures whichever ranks read the sources.
    one, three = (r.raw for r in reports)
    for key in ("destination", "movement"):
        assert one[key] == three[key]
    print(f"{old_text} -> {new_text}: {len(want)} shards, imbalance {reports[0].skew.imbalance:.2f}, "
          f"{changing}/{matrix.nnz} entries change shard")


def test_movement_and_bytes_match_a_real_run(tmp_path, matrix, reshard):
    old_text, new_text = "rows:block=400", "cols:block=100"
    src = str(tmp_path / "src" / "shard_{i}.npz")
    dst = str(tmp_path / "dst" / "part_{i}.npz")
    write_sharded(matrix, Scheme.parse(old_text), src)
    report = plan(src, old_text, new_text, ranks=3, compress="none", dst_pattern=dst)
    run = reshard(src, old_text, dst, new_text, ranks=3, extra=["--compress", "none", "--report",
                                                                 str(tmp_path / "report.json")])
    assert run.returncode == 0, run.stderr
    import json
    job = json.loads((tmp_path / "report.json").read_text())
    # The plan models the job's own owner choice on the same rank count.
    assert report.entries_crossing_ranks == job["totals"]["entries_sent"]
    for d, estimate in enumerate(report.bytes):
        actual = os.path.getsize(render(dst, d, (0, d)))
        assert abs(estimate - actual) <= 0.10 * actual, f"shard {d}: estimated {estimate}, wrote {actual}"
    worst = max(abs(e - os.path.getsize(render(dst, d, (0, d)))) / os.path.getsize(render(dst, d, (0, d)))
                for d, e in enumerate(report.bytes))
    print(f"bytes estimate: worst shard off by {worst:.2%}; crossing ranks {report.entries_crossing_ranks}")


def test_plan_never_reads_values(tmp_path, matrix):
    """A shard whose data array is garbage still plans: plan reads indices only."""
    src = tmp_path / "src"
    write_sharded(matrix, Scheme.parse("rows:block=400"), str(src / "shard_{i}.npz"), compressed=False)
    victim = src / "shard_2.npz"
    with zipfile.ZipFile(victim) as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["data.npy"] = b"\xff" * len(members["data.npy"])
    with zipfile.ZipFile(victim, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    report = plan(str(src / "shard_{i}.npz"), "rows:block=400", "cols:block=100")
    assert report.entries == expected_entries(matrix, "cols:block=100")
    with pytest.raises(Exception):
        sp.load_npz(victim)


def largest_line(matrix, axis):
    counts = np.bincount(coords(matrix)[0 if axis == "rows" else 1], minlength=SHAPE[0 if axis == "rows" else 1])
    return int(counts.max())


@pytest.mark.parametrize("new_text,axis", [("cols:block=100", "cols"), ("rows:block=400", "rows")])
def test_balanced_proposal_is_within_bound_and_the_reshard_writes_it(tmp_path, matrix, reshard, new_text, axis):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(matrix, Scheme.parse("rows:block=400"), src)
    # On 3 ranks for columns: the line counts are summed onto rank 0.
    report = plan(src, "rows:block=400", new_text, balance="nnz", shards=8, num_ranks=3 if axis == "cols" else 1)
    proposal = report.proposal
    assert proposal is not None and len(proposal.entries) == 8
    mean = matrix.nnz / 8
    line = largest_line(matrix, axis)
    bound = max(1.1 * mean, line)
    print(f"{axis}: before imbalance {report.skew.imbalance:.2f}, after {proposal.skew.imbalance:.3f}; "
          f"bound {'1.1 x mean' if bound == 1.1 * mean else 'largest single ' + axis[:-1]} = {bound:.0f}")
    assert proposal.skew.max <= bound
    assert proposal.skew.imbalance < report.skew.imbalance
    # The proposed scheme, resharded for real: the shards hold what was promised.
    dst = str(tmp_path / "dst" / "part_{i}.npz")
    run = reshard(src, "rows:block=400", dst, proposal.scheme.to_cli(), ranks=3)
    assert run.returncode == 0, run.stderr
    written = [sp.load_npz(render(dst, d, (0, d) if axis == "cols" else (d, 0))).nnz for d in range(8)]
    assert written == proposal.entries


def test_balanced_proposal_is_optimal_by_brute_force(tmp_path):
    rng = np.random.default_rng(3)
    for trial in range(6):
        nrows = 11
        # Skewed rows: each row's density drawn separately, some rows empty.
        density = rng.random(nrows) ** 3 * (rng.random(nrows) < 0.8)
        m = sp.csr_matrix(rng.random((nrows, 40)) < density[:, None]).astype(np.float64)
        counts = np.diff(m.indptr)
        src = str(tmp_path / f"t{trial}" / "shard_{i}.npz")
        write_sharded(m, Scheme.parse("rows:block=4"), src)
        for parts in (2, 3, 4):
            got = plan(src, "rows:block=4", "rows:block=4", balance="nnz", shards=parts).proposal
            best = min(max(counts[a:b].sum() for a, b in zip((0,) + cuts, cuts + (nrows,)))
                       for cuts in itertools.combinations(range(1, nrows), parts - 1))
            assert got.skew.max == best, (counts.tolist(), parts, got.scheme)


@pytest.mark.parametrize("balance", ["weight", "weighted-nnz"])
def test_weighted_proposal_balances_the_forecast(tmp_path, matrix, balance):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(matrix, Scheme.parse("rows:block=400"), src)
    rng = np.random.default_rng(9)
    # A forecast: a few very hot rows early on, the rest lukewarm.
    weights = rng.random(SHAPE[0]) + np.where(np.arange(SHAPE[0]) < 300, 20.0, 0.0)
    path = tmp_path / "forecast.npy"
    np.save(path, weights)
    report = plan(src, "rows:block=400", "rows:block=400", balance=balance, shards=6, weights=str(path))
    proposal = report.proposal
    per_row = weights * (np.bincount(coords(matrix)[0], minlength=SHAPE[0]) if balance == "weighted-nnz" else 1)
    starts = list(proposal.scheme.row_starts) + [SHAPE[0]]
    load = np.array([per_row[a:b].sum() for a, b in zip(starts, starts[1:])])
    assert proposal.load_after == pytest.approx(load.tolist(), rel=1e-9)
    bound = max(1.1 * load.mean(), per_row.max())
    print(f"{balance}: predicted load max/mean {load.max() / load.mean():.3f} after, "
          f"{max(proposal.load_before) / np.mean(proposal.load_before):.3f} before")
    assert load.max() <= bound
    # A CSV forecast with the same numbers gives the same proposal.
    csv = tmp_path / "forecast.csv"
    csv.write_text("index,weight\n" + "".join(f"{i},{w!r}\n" for i, w in enumerate(weights)))
    again = plan(src, "rows:block=400", "rows:block=400", balance=balance, shards=6, weights=str(csv))
    assert again.proposal.scheme == proposal.scheme


def run_plan(*args):
    return subprocess.run([binary(), "plan", *args], capture_output=True, text=True,
                          env=dict(os.environ, **MPI_ENV), timeout=120)


def test_fail_on_skew_gates_and_bad_input_is_exit_2(tmp_path, matrix):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(matrix, Scheme.parse("rows:block=400"), src)
    base = ["--src", src, "--old-scheme", "rows:block=400", "--new-scheme", "cols:block=100"]
    skewed = run_plan(*base, "--fail-on-skew", "0.2")
    assert skewed.returncode == 2
    assert "exceeds --fail-on-skew 0.2" in skewed.stderr
    assert "imbalance" in skewed.stdout, "the figures are printed before the refusal"
    assert run_plan(*base, "--fail-on-skew", "1000").returncode == 0
    bad = tmp_path / "w.csv"
    bad.write_text("0,1\n1,2\n7,oops\n")
    refused = run_plan(*base, "--balance", "weight", "--weights", str(bad))
    assert refused.returncode == 2
    assert f"{bad} line 3: weight 'oops' is not a number" in refused.stderr
    grid = run_plan("--src", src, "--old-scheme", "rows:block=400", "--new-scheme", "grid:block=5x5",
                    "--balance", "nnz")
    assert grid.returncode == 2 and "is a grid" in grid.stderr
    with pytest.raises(ReshardError) as e:
        plan(src, "rows:block=400", "cols:block=100", balance="weight")
    assert e.value.exit_code == 2 and "needs --weights" in str(e.value)


def test_row_ranges_spec_round_trips_through_the_cli():
    spec = ShardingSpec.row_ranges([0, 5, 90])
    assert spec.to_cli() == "rows:ranges=0,5,90"
    assert ShardingSpec.from_cli(spec.to_cli()) == spec
    assert ShardingSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError):
        ShardingSpec.row_ranges([1, 5])


def test_uncompressed_indices_are_streamed_and_checked(tmp_path, matrix):
    """Stored (uncompressed) indices are counted in pieces: the same figures
    as numpy, on 1 and 3 ranks, and a flipped byte is caught by the CRC."""
    src = tmp_path / "src"
    write_sharded(matrix, Scheme.parse("rows:block=400"), str(src / "shard_{i}.npz"), compressed=False)
    want = expected_entries(matrix, "cols:block=100")
    for n in (1, 3):
        assert plan(str(src / "shard_{i}.npz"), "rows:block=400", "cols:block=100", num_ranks=n).entries == want
    victim = src / "shard_5.npz"
    raw = bytearray(victim.read_bytes())
    with zipfile.ZipFile(victim) as z:
        info = z.getinfo("indices.npy")
    # The low bit of the last index (int32, little-endian): the value moves
    # by one and stays in range, so only the CRC can tell.
    header_len = 30 + len(info.filename) + len(info.extra)
    raw[info.header_offset + header_len + info.compress_size - 4] ^= 0x01
    victim.write_bytes(bytes(raw))
    run = run_plan("--src", str(src / "shard_{i}.npz"), "--old-scheme", "rows:block=400", "--new-scheme",
                   "cols:block=100")
    assert run.returncode == 2, run.stderr
    assert f"reading {victim}: array 'indices': CRC-32 mismatch in member indices.npy" in run.stderr
