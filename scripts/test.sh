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
# install-deps.sh installs promtool and the Pushgateway: their tests must run.
export RESHARD_REQUIRE_PROMETHEUS=1

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

echo "== sanitizers: unit tests, MPI tests and a spilling 3-rank job under ASan + UBSan"
# Open MPI's own allocations outlive MPI_Finalize, so leak checking stays off
# for the MPI runs; every other ASan and UBSan check is on and fatal.
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
build-asan/bin/unit_tests --gtest_brief=1
ASAN_OPTIONS=detect_leaks=0 mpirun -np 3 -x ASAN_OPTIONS build-asan/bin/mpi_job_test --gtest_brief=1
san_work="$(mktemp -d /tmp/reshard-asan-XXXXXX)"
/usr/bin/python3 -c "
import sys; sys.path.insert(0, 'python')
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded
write_sharded(skewed_matrix(200000, 50000, 3000000, seed=4), Scheme.parse('rows:block=12500'), '$san_work/src/shard_{i}.npz')"
# The limit is there to make ranks spill, so it is set from what a rank holds
# before it reads anything (the report's memory.baseline_bytes): ASan's shadow
# memory and Open MPI make that ~110-130 MiB, and it differs between machines
# (a fixed 160MiB spilled here and not on CI's machine at 8312add). A probe
# run with room to spare measures it; the real run then gets 8 MiB of
# working memory for ~15 MiB of 16-byte entries per rank, so it must spill.
san_job() {
  ASAN_OPTIONS=detect_leaks=0 mpirun -np 3 -x ASAN_OPTIONS build-asan/bin/mpi_reshard \
    --src "$san_work/src/shard_{i}.npz" --old-scheme rows:block=12500 \
    --dst "$san_work/$1/shard_{i}.npz" --new-scheme 'rows:hash=jump,shards=40' \
    --memory-limit "$2" --scratch-dir "$san_work" --threads 2 --report "$san_work/$1.json" -q
}
san_job probe 2GiB
san_limit="$(/usr/bin/python3 -c "import json; b = json.load(open('$san_work/probe.json'))['memory']['baseline_bytes']; print(-(-b // 2**20) + 6 + 8)")MiB"
echo "   spilling run: --memory-limit $san_limit"
san_job dst "$san_limit"
/usr/bin/python3 -c "import json, sys; r = json.load(open('$san_work/dst.json')); sys.exit(0 if r['totals']['bytes_spilled'] > 0 else 'the sanitizer job did not spill: ' + json.dumps(r['memory']))"
ASAN_OPTIONS=detect_leaks=0 build-asan/bin/mpi_reshard verify --dst "$san_work/dst/shard_{i}.npz" --against-src
rm -rf "$san_work"

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
