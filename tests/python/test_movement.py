"""Minimal movement: destination shards are owned by the rank that already
holds most of them, so entries that can stay on a rank never cross MPI."""
import json

import pytest

from conftest import run_reshard
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

SHAPE = (3000, 400)


@pytest.fixture(scope="module")
def matrix():
    return skewed_matrix(*SHAPE, 40000, seed=41)


def moved_fraction(tmp_path, matrix, old, new, ranks, extra=()):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(matrix, Scheme.parse(old), src)
    report = tmp_path / "report.json"
    run = run_reshard(src, old, str(tmp_path / "dst" / "shard_{i}.npz"), new, ranks=ranks,
                      extra=["--report", str(report), *extra])
    assert run.returncode == 0, run.stderr
    r = json.loads(report.read_text())
    total_bytes = 32 * r["nnz"]
    assert r["bytes_sent_lower_bound"] <= r["totals"]["bytes_sent"]
    return r["totals"]["bytes_sent"] / total_bytes, r


# The sources are deflated: with --compress deflate:1 every shard is copied
# unchanged (docs/operations.md); with --compress none each is rewritten, and
# it is the choice of owners that keeps every entry on its rank.
@pytest.mark.parametrize("compress, reused", [("deflate:1", True), ("none", False)])
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_identity_reshard_sends_nothing(tmp_path, matrix, ranks, compress, reused):
    fraction, report = moved_fraction(tmp_path, matrix, "rows:block=200", "rows:block=200", ranks,
                                      extra=["--compress", compress])
    assert report["totals"]["bytes_sent"] == 0
    shards = report["destination_shards"]
    assert report["totals"]["destination_shards_reused"] == (shards if reused else 0)


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_jump_hash_growing_by_one_moves_about_one_in_n_plus_one(tmp_path, matrix, ranks):
    n = 8
    fraction, _ = moved_fraction(tmp_path, matrix, f"rows:hash=jump,shards={n}", f"rows:hash=jump,shards={n + 1}",
                                 ranks)
    assert fraction <= (1 / (n + 1)) * (ranks - 1) / ranks + 0.05


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_doubling_row_blocks_moves_at_most_half(tmp_path, matrix, ranks):
    fraction, _ = moved_fraction(tmp_path, matrix, "rows:block=100", "rows:block=200", ranks)
    assert fraction <= 0.5
