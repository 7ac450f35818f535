#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: GoogleTest units,
# MPI integration tests under mpiexec with 1-4 ranks (CTest), and the pytest
# end-to-end suite on shards written by real scipy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
preset=release
if [ "${CI:-}" = "true" ]; then preset=ci; fi
scripts/build.sh "$preset"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export RESHARD_BIN="$PWD/build/bin/mpi_reshard"

echo "== formatting (clang-format)"
scripts/lint.sh

echo "== S3 test servers (s3rver behind the signature-verifying front, 127.0.0.1)"
s3_work="$(mktemp -d /tmp/reshard-s3-XXXXXX)"
trap 'tests/s3/servers.sh stop "$s3_work"; rm -rf "$s3_work"' EXIT
s3_info="$(tests/s3/servers.sh start "$s3_work")"
s3_endpoint="${s3_info%% *}"
export RESHARD_TEST_S3_ENDPOINT="$s3_endpoint" RESHARD_TEST_S3_DATA="$s3_work/data" RESHARD_REQUIRE_S3=1
echo "   $s3_endpoint"

echo "== C++ tests (ctest)"
ctest --test-dir build --output-on-failure -j 2

echo "== Python end-to-end tests (pytest)"
# Debian's python sees Debian's numpy/scipy; a pyenv python3 on PATH does not.
/usr/bin/python3 -m pytest -q tests/python

echo "== fuzzing the npz and zip parsers (libFuzzer, ASan + UBSan, 60 s each)"
scripts/fuzz.sh 60

echo "== Slurm: the real sbatch script on a one-node cluster"
tests/slurm/run_slurm_test.sh

# Timings are figures, not pass/fail (docs/performance.md). Its memory run is
# a test: it fails if a rank's peak RSS exceeds --memory-limit + 10% or the
# output differs from an unlimited run.
echo "== benchmark, quick size, and the bounded-memory check"
bench_work="$(mktemp -d /tmp/reshard-bench-XXXXXX)"
bench/run.sh --quick --work "$bench_work"
rm -rf "$bench_work"
