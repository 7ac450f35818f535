#!/usr/bin/env bash
# The newcomer's tour: installs what is missing, builds, makes a sample
# sharded matrix (~10M nonzeros, skewed rows) with scipy, reshards row blocks
# into column ranges with MPI on 2 ranks (first planning it: the skew of
# plain column blocks and a balanced proposal, which is what it writes),
# verifies the result with scipy, turns it into AnnData .h5ad row blocks and
# back, and prints a summary. DEMO_DIR (default:
# ./demo-data) holds the files.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release

DEMO_DIR="${DEMO_DIR:-$PWD/demo-data}"
RANKS="${RANKS:-2}"
ROWS=2000000 COLS=1000000 NNZ="${DEMO_NNZ:-10000000}"
OLD="rows:block=250000"
NEW="cols:block=125000"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
echo "== making a sample matrix with scipy in $DEMO_DIR/m"
/usr/bin/python3 scripts/demo_matrix.py make --pattern "$DEMO_DIR/m/shard_{i}.npz" --scheme "$OLD" \
  --rows "$ROWS" --cols "$COLS" --nnz "$NNZ" --seed 1

echo "== planning $OLD -> $NEW: skew of the plain scheme, and a balanced proposal"
# Reads only the index arrays; the proposal is an optimal split into as many
# column ranges as the plain scheme has shards.
mpirun -np "$RANKS" --oversubscribe --bind-to none build/bin/mpi_reshard plan \
  --src "$DEMO_DIR/m/shard_{i}.npz" --old-scheme "$OLD" --new-scheme "$NEW" --balance nnz \
  --dst "$DEMO_DIR/m_cols/shard_{i}.npz" --format json > "$DEMO_DIR/plan.json"
mpirun -np "$RANKS" --oversubscribe --bind-to none build/bin/mpi_reshard plan \
  --src "$DEMO_DIR/m/shard_{i}.npz" --old-scheme "$OLD" --new-scheme "$NEW" --balance nnz \
  --dst "$DEMO_DIR/m_cols/shard_{i}.npz"
NEW="$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["proposal"]["scheme"])' \
  "$DEMO_DIR/plan.json")"

echo "== resharding $OLD -> $NEW (the balanced proposal) with mpirun -np $RANKS"
/usr/bin/time -v -o "$DEMO_DIR/time.txt" \
  mpirun -np "$RANKS" --oversubscribe --bind-to none build/bin/mpi_reshard \
    --src "$DEMO_DIR/m/shard_{i}.npz" --old-scheme "$OLD" \
    --dst "$DEMO_DIR/m_cols/shard_{i}.npz" --new-scheme "$NEW" \
    --report "$DEMO_DIR/report.json" --progress
wall=$(grep "Elapsed (wall clock)" "$DEMO_DIR/time.txt" | awk '{print $NF}')
echo "   mpirun wall time $wall (peak RSS per rank is in the report's per_rank entries)"

echo "== verifying with scipy"
/usr/bin/python3 scripts/demo_matrix.py verify \
  --src "$DEMO_DIR/m/shard_{i}.npz" --src-scheme "$OLD" \
  --dst "$DEMO_DIR/m_cols/shard_{i}.npz" --dst-scheme "$NEW" \
  --shape "${ROWS}x${COLS}" --report "$DEMO_DIR/report.json"

echo "== AnnData round trip: the column ranges as row-block .h5ad files, and back to .npz"
mpirun -np "$RANKS" --oversubscribe --bind-to none build/bin/mpi_reshard -q \
  --src "$DEMO_DIR/m_cols/shard_{i}.npz" --old-scheme "$NEW" \
  --dst "$DEMO_DIR/m_h5ad/shard_{i}.h5ad" --new-scheme "$OLD"
mpirun -np "$RANKS" --oversubscribe --bind-to none build/bin/mpi_reshard -q \
  --src "$DEMO_DIR/m_h5ad/shard_{i}.h5ad" --old-scheme "$OLD" \
  --dst "$DEMO_DIR/m_back/shard_{i}.npz" --new-scheme "$OLD"
/usr/bin/python3 scripts/demo_matrix.py h5ad-round-trip --src "$DEMO_DIR/m/shard_{i}.npz" \
  --h5ad "$DEMO_DIR/m_h5ad/shard_{i}.h5ad" --back "$DEMO_DIR/m_back/shard_{i}.npz"
echo "== done: output in $DEMO_DIR/m_cols (and m_h5ad), report in $DEMO_DIR/report.json"
