#!/usr/bin/env bash
# Stop the Prefect server deploy/start-prefect-server.sh started (by its PID file; its database stays).
set -euo pipefail
source "$(dirname "$0")/_lib.sh"
stop_pidfile prefect-server 30
