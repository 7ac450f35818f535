"""sparse-reshard: re-shard scipy.sparse .npz shards with MPI.

>>> from sparse_reshard import ShardingSpec, reshuffle, is_published
>>> reshuffle("data/m/shard_{i}.npz", "data/m_cols/shard_{i}.npz",
...           ShardingSpec.row_blocks(250_000), ShardingSpec.col_blocks(125_000))  # doctest: +SKIP
>>> is_published("data/m_cols/shard_{i}.npz")  # doctest: +SKIP
True
"""
from .datasets import is_published, load_matrix, read_report
from .planning import PlanReport, Proposal, Skew, plan
from .progress import Progress
from .report import JobReport, RankReport
from .runner import ReshardError, find_binary, reshuffle
from .spec import ShardingSpec

__all__ = ["ShardingSpec", "reshuffle", "plan", "PlanReport", "Proposal", "Skew", "Progress", "ReshardError", "JobReport", "RankReport", "find_binary", "is_published", "read_report",
           "load_matrix"]
__version__ = "0.1.0"
