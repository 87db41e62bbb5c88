#!/usr/bin/env bash
# Start a Dask scheduler and N worker processes on 127.0.0.1, in the background.
#
#   deploy/start-dask-cluster.sh 2            # scheduler tcp://127.0.0.1:8786, 2 workers
#   export FACTORFLOW_DASK_ADDRESS=tcp://127.0.0.1:8786
#
# Each worker is its own `dask worker` process (one process, DASK_WORKER_THREADS threads, default
# 1), as on separate machines. Ports: DASK_SCHEDULER_PORT (8786), DASK_DASHBOARD_PORT (8787).
# Idempotent: when the scheduler already runs, starts only the workers that are missing.
# Run directory: $FACTORFLOW_RUN_DIR, default deploy/.run (PID files, logs, worker space).
set -euo pipefail
source "$(dirname "$0")/_lib.sh"
need dask
N="${1:-2}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N='$N': the number of workers must be a whole number >= 1"
PORT="${DASK_SCHEDULER_PORT:-8786}"
DASH="${DASK_DASHBOARD_PORT:-8787}"
THREADS="${DASK_WORKER_THREADS:-1}"
TIMEOUT="${FACTORFLOW_STARTUP_TIMEOUT:-600}"
ADDRESS="tcp://127.0.0.1:$PORT"
PY="$(dirname "$(command -v dask)")/python"
[ -x "$PY" ] || PY=python

n_workers() {  # how many workers the scheduler knows
    "$PY" - "$ADDRESS" <<'PYEOF'
import sys
from distributed import Client
with Client(sys.argv[1], timeout="10s") as c:
    print(len(c.scheduler_info()["workers"]))
PYEOF
}

if pid=$(pid_of dask-scheduler); then
    echo "Dask scheduler already running (PID $pid) at $ADDRESS"
else
    echo "starting the Dask scheduler at $ADDRESS (dashboard http://127.0.0.1:$DASH/status)"
    rm -f "$RUN_DIR/dask-scheduler.json"
    start_bg dask-scheduler "$RUN_DIR/dask-scheduler.log" dask scheduler --host 127.0.0.1 --port "$PORT" \
        --dashboard-address "127.0.0.1:$DASH" --scheduler-file "$RUN_DIR/dask-scheduler.json"
    pid=$(cat "$RUN_DIR/dask-scheduler.pid")
    sched_up() { alive "$pid" || { echo "the Dask scheduler exited while starting; last lines of its log:" >&2;
                                   tail -n 20 "$RUN_DIR/dask-scheduler.log" >&2; exit 2; }
                 [ -s "$RUN_DIR/dask-scheduler.json" ]; }
    wait_until "$TIMEOUT" "the Dask scheduler" sched_up || die "the Dask scheduler did not start within $TIMEOUT s"
fi
started=0
for ((i = 1; i <= N; i++)); do
    if pid_of "dask-worker-$i" >/dev/null; then continue; fi
    start_bg "dask-worker-$i" "$RUN_DIR/dask-worker-$i.log" dask worker "$ADDRESS" --name "worker-$i" \
        --nworkers 1 --nthreads "$THREADS" --host 127.0.0.1 --no-dashboard \
        --local-directory "$RUN_DIR/dask-worker-space"
    started=$((started + 1))
done
echo "started $started worker process(es); waiting for $N worker(s) to join (up to $TIMEOUT s)"
enough() { local n; n=$(n_workers 2>/dev/null) || return 1; (( n >= N )); }
wait_until "$TIMEOUT" "$N Dask workers" enough || die "fewer than $N workers joined within $TIMEOUT s (logs in $RUN_DIR)"
echo "Dask cluster running: scheduler $ADDRESS, $(n_workers) worker(s), dashboard http://127.0.0.1:$DASH/status"
echo "export FACTORFLOW_DASK_ADDRESS=$ADDRESS"
