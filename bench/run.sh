#!/usr/bin/env bash
# The benchmark: scipy single-process reshard vs mpi_reshard on 1 and 2
# ranks vs the I/O floor (cat + cp), for rows->cols and rows->hash,
# compressed and uncompressed. `--quick` for a 2M-nonzero run (CI runs it);
# the default is 100M nonzeros; also one .h5ad <-> .npz shards against
# anndata (--only-h5ad for just that). Prints wall time, peak RSS and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bin/mpi_reshard ] || { scripts/install-deps.sh; scripts/build.sh release; }
exec /usr/bin/python3 bench/bench.py "$@"
