#!/usr/bin/env bash
# Stop the workers and the scheduler deploy/start-dask-cluster.sh started (by their PID files).
set -euo pipefail
source "$(dirname "$0")/_lib.sh"
shopt -s nullglob
for f in "$RUN_DIR"/dask-worker-*.pid; do
    stop_pidfile "$(basename "$f" .pid)" 30
done
stop_pidfile dask-scheduler 30
rm -f "$RUN_DIR/dask-scheduler.json"
