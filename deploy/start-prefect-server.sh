#!/usr/bin/env bash
# Start a local Prefect server on 127.0.0.1 (UI and API), in the background, with its own
# PREFECT_HOME and SQLite database under the run directory. Idempotent: when it already runs,
# says so and prints the same exports.
#
#   deploy/start-prefect-server.sh            # port 4200 (PREFECT_SERVER_PORT to change)
#   export PREFECT_API_URL=http://127.0.0.1:4200/api
#
# Run directory: $FACTORFLOW_RUN_DIR, default deploy/.run (PID file, log, Prefect home).
# Start-up wait: $FACTORFLOW_STARTUP_TIMEOUT seconds (default 600; a loaded machine is slow).
set -euo pipefail
source "$(dirname "$0")/_lib.sh"
need prefect
PORT="${PREFECT_SERVER_PORT:-4200}"
TIMEOUT="${FACTORFLOW_STARTUP_TIMEOUT:-600}"
HOME_DIR="${FACTORFLOW_PREFECT_HOME:-$RUN_DIR/prefect-home}"
URL="http://127.0.0.1:$PORT"
LOG="$RUN_DIR/prefect-server.log"

healthy() { curl -fs --max-time 5 "$URL/api/health" >/dev/null; }

if pid=$(pid_of prefect-server); then
    echo "Prefect server already running (PID $pid) at $URL"
else
    if healthy; then die "something else already answers at $URL (not started by this script); set PREFECT_SERVER_PORT"; fi
    mkdir -p "$HOME_DIR"
    echo "starting the Prefect server at $URL (log: $LOG; waiting up to $TIMEOUT s)"
    (
        unset PREFECT_API_URL
        export PREFECT_HOME="$HOME_DIR" PREFECT_SERVER_ANALYTICS_ENABLED=false \
               PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///$HOME_DIR/prefect.db"
        start_bg prefect-server "$LOG" prefect server start --host 127.0.0.1 --port "$PORT"
    )
    pid=$(cat "$RUN_DIR/prefect-server.pid")
    check() { alive "$pid" || { echo "the Prefect server exited while starting; last lines of $LOG:" >&2;
                                tail -n 20 "$LOG" >&2; exit 2; }; healthy; }
    if ! wait_until "$TIMEOUT" "the Prefect server" check; then
        echo "the Prefect server did not answer within $TIMEOUT s; stopping it (log: $LOG)" >&2
        stop_pidfile prefect-server 10 >&2
        exit 2
    fi
    echo "Prefect server running (PID $pid)"
fi
echo "  UI:  $URL"
echo "  API: $URL/api"
echo "export PREFECT_API_URL=$URL/api"
