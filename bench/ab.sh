#!/usr/bin/env bash
# A/B of two mpi_reshard binaries on the sources bench/run.sh generated,
# alternating runs so both see the same machine state (on the project's VM
# the cost of fresh memory moves by 10x between minutes: docs/performance.md).
#
#   bench/ab.sh OLD_BIN NEW_BIN CASE [RUNS] [WORK]
#
# CASE: cols-none | hash-none | cols-igzip | hash-igzip (the bench's
# rows->cols:block and rows->hash=mix,shards=8 targets). WORK is the
# --work directory of an earlier `bench/run.sh` (default /tmp/b100). Extra
# mpirun options per binary: OLD_MPI / NEW_MPI (e.g. NEW_MPI="-x
# RESHARD_DIRECT_WRITES=0"). Prints, per run, the wall time and each rank's
# write and assemble seconds and peak RSS from the job's report.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,14p' "$0"; exit 2; }
old_bin=$1 new_bin=$2 case_name=$3 runs=${4:-2} work=${5:-/tmp/b100}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
params="$work/src-none/params.json"
[ -f "$params" ] || { echo "ab.sh: no $params; run bench/run.sh --work $work first" >&2; exit 2; }
read -r src_scheme dst_cols < <(/usr/bin/python3 -c "
import json; p = json.load(open('$params')); print(p['scheme'], -(-p['cols'] // 8))")
case $case_name in
  cols-none) scheme="cols:block=$dst_cols" compress=none ;;
  hash-none) scheme="rows:hash=mix,shards=8" compress=none ;;
  cols-igzip) scheme="cols:block=$dst_cols" compress=igzip:1 ;;
  hash-igzip) scheme="rows:hash=mix,shards=8" compress=igzip:1 ;;
  *) echo "ab.sh: unknown case $case_name" >&2; exit 2 ;;
esac
# The bench's per-rank limit for 2 ranks: 80% of memory / ranks.
limit="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 8 / 10 / 2 / 1024 ))MiB"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((r = 1; r <= runs; r++)); do
  for which in old new; do
    if [ $which = old ]; then bin=$old_bin extra=${OLD_MPI:-}; else bin=$new_bin extra=${NEW_MPI:-}; fi
    rm -rf "$out/dst"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    mpirun -np 2 --bind-to none $extra "$bin" --src "$work/src-none/shard_{i}.npz" --old-scheme "$src_scheme" \
      --dst "$out/dst/s_{i}.npz" --new-scheme "$scheme" --compress "$compress" --memory-limit "$limit" \
      --report "$out/report.json" -q < /dev/null
    end=$(date +%s.%N)
    /usr/bin/python3 -c "
import json
r = json.load(open('$out/report.json'))
ranks = r['per_rank']
print(f'$which $case_name run $r: {$end - $start:.2f} s', 'write', [round(p['seconds']['write'], 2) for p in ranks],
      'assemble', [round(p['seconds']['assemble'], 2) for p in ranks], 'peak RSS MiB', [p['peak_rss_bytes'] >> 20 for p in ranks])"
  done
done
