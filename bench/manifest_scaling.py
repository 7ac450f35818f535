"""Commit cost against the number of destination shards (issue 11.4): the
same small matrix resharded into N shards for growing N, one rank, timing
the whole job. Prints seconds, microseconds per shard written, and each
size's cost per shard as a ratio of the smallest size's, measured in this
run. Usage: /usr/bin/python3 bench/manifest_scaling.py [N ...]"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded  # noqa: E402

BIN = os.environ.get("RESHARD_BIN", os.path.join(ROOT, "build", "bin", "mpi_reshard"))
ENTRIES = 15000
COLS = 64


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 4000, 16000]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    base = None
    print(f"{'shards':>9} {'seconds':>9} {'us/shard':>9} {'ratio':>6}")
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as work:
            src = os.path.join(work, "src", "shard_{i}.npz")
            write_sharded(skewed_matrix(n, COLS, min(ENTRIES, n * COLS // 2), seed=5), Scheme.parse(f"rows:block={n}"),
                          src)
            cmd = ["mpirun", "-np", "1", BIN, "--src", src, "--old-scheme", f"rows:block={n}",
                   "--dst", os.path.join(work, "dst", "shard_{i}.npz"), "--new-scheme", "rows:block=1",
                   "--compress", "none"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - t0
        per_shard = seconds / n * 1e6
        base = base or per_shard
        print(f"{n:>9} {seconds:>9.2f} {per_shard:>9.0f} {per_shard / base:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
