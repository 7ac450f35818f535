#!/usr/bin/env bash
# Runs scripts/slurm/reshard.sbatch on a real one-node Slurm cluster started
# here: installs slurm-wlm and munge, writes a slurm.conf for this host
# (loopback only), starts munged, slurmctld and slurmd, submits the real
# script with `sbatch --wait` over 2 tasks, checks the output with scipy and
# the fingerprint, then stops the daemons it started. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

if [ "$(id -u)" -ne 0 ]; then echo "slurm test: needs root to run the Slurm daemons" >&2; exit 1; fi
missing=()
for pkg in slurm-wlm munge; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi

WORK="$(mktemp -d /tmp/reshard-slurm-XXXXXX)"
HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
mkdir -p "$WORK"/{state,spool,munge,data}
chmod 755 "$WORK"

pids=()
cleanup() {
  set +e
  scancel --quiet --user=root 2>/dev/null
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 1
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  if [ "${KEEP_SLURM_WORK:-}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# munge: a private key and socket, so nothing here touches a system munged.
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
MUNGE_SOCKET="$WORK/munge/munge.socket"
munged --force --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCKET" \
  --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" --seed-file="$WORK/munge/seed"
pids+=("$(cat "$WORK/munge/munged.pid")")

# Free ports on loopback, chosen by the kernel.
read -r CTLD_PORT SLURMD_PORT < <(/usr/bin/python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

export SLURM_CONF="$WORK/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=reshardtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=60 State=UP OverSubscribe=YES
CONF

slurmctld -f "$SLURM_CONF" -i
sleep 1
pids+=("$(cat "$WORK/slurmctld.pid")")
slurmd -f "$SLURM_CONF"
sleep 1
pids+=("$(cat "$WORK/slurmd.pid")")

# Wait (bounded) for the node to come up.
for _ in $(seq 1 60); do
  state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
  case "$state" in idle*|mixed*|allocated*) break ;; esac
  sleep 1
done
echo "slurm test: node $HOST is ${state:-unknown}"
case "$state" in idle*|mixed*|allocated*) ;; *)
  echo "slurm test: the node did not come up; logs:" >&2
  tail -20 "$WORK/slurmctld.log" "$WORK/slurmd.log" >&2
  exit 1 ;;
esac

SRC="$WORK/data/m/shard_{i}.npz"
DST="$WORK/data/m_cols/shard_{i}.npz"
/usr/bin/python3 scripts/demo_matrix.py make --pattern "$SRC" --scheme rows:block=5000 \
  --rows 40000 --cols 6000 --nnz 400000 --seed 5

export RESHARD_SRC="$SRC" RESHARD_DST="$DST" RESHARD_OLD_SCHEME=rows:block=5000 RESHARD_NEW_SCHEME=cols:block=700
export RESHARD_BIN="$ROOT/build/bin/mpi_reshard" RESHARD_REPORT="$WORK/report.json"
# One node here, so the test asks for 2 tasks on it; the script's own
# default is one task per node.
cd "$WORK"
sbatch --wait --nodes=1 --ntasks=2 --ntasks-per-node=2 --mem=1G --time=10 \
  --output="$WORK/reshard-%j.log" "$ROOT/scripts/slurm/reshard.sbatch" || {
  echo "slurm test: the batch job failed; its log:" >&2
  cat "$WORK"/reshard-*.log >&2
  exit 1
}
cd "$ROOT"
cat "$WORK"/reshard-*.log
grep -q "on 2 rank(s)" "$WORK"/reshard-*.log || { echo "slurm test: the job did not run on 2 ranks" >&2; exit 1; }
# Whole node (--exclusive), shared by its 2 tasks.
want_cpus=$(( CPUS / 2 > 0 ? CPUS / 2 : 1 ))
grep -q "2 task(s) per node, $want_cpus CPU(s) each" "$WORK"/reshard-*.log ||
  { echo "slurm test: srun did not give each task $want_cpus CPU(s)" >&2; exit 1; }
/usr/bin/python3 scripts/demo_matrix.py verify --src "$SRC" --src-scheme rows:block=5000 \
  --dst "$DST" --dst-scheme cols:block=700 --shape 40000x6000 --report "$WORK/report.json"

# The third way to run: Python's reshuffle() inside an allocation uses srun.
PY_DST="$WORK/data/m_hash/part_{i}.npz"
cat > "$WORK/from_python.py" <<PY
import sys
sys.path.insert(0, "$ROOT/python")
from sparse_reshard import ShardingSpec, reshuffle, is_published, read_report
fractions = []
reshuffle("$SRC", "$PY_DST", ShardingSpec.row_blocks(5000), ShardingSpec.hashed("rows", "jump", num_shards=5),
          num_ranks=2, progress_cb=fractions.append)
assert is_published("$PY_DST") and fractions[-1] == 1.0, fractions
report = read_report("$PY_DST")
assert report["ranks"] == 2, report["ranks"]
print("python under slurm: published", report["nnz"], "entries on", report["ranks"], "ranks")
PY
cd "$WORK"
sbatch --wait --nodes=1 --ntasks=2 --mem=1G --time=10 --output="$WORK/python-%j.log" \
  --wrap "/usr/bin/python3 $WORK/from_python.py" || { cat "$WORK"/python-*.log >&2; exit 1; }
cd "$ROOT"
cat "$WORK"/python-*.log
grep -q "python under slurm: published" "$WORK"/python-*.log
echo "slurm test: passed"
