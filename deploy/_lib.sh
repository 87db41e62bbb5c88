# Shared by the deploy/ scripts (sourced, not run): the run directory, PID files, stopping by PID.
# Every process a script starts is the leader of its own process group (setsid), and its PID is
# written to RUN_DIR/NAME.pid; stopping signals exactly that group: no pkill, no killall.

RUN_DIR="${FACTORFLOW_RUN_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.run}"
mkdir -p "$RUN_DIR"

die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }

need() {  # need EXE: the command must be on PATH (activate the project's virtual environment)
    command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH (activate the environment factorflow is installed in)"
}

alive() {  # alive PID: the process runs and is not a zombie
    local pid="$1" state
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo R)
    [ "$state" != "Z" ]
}

pid_of() {  # pid_of NAME: the PID recorded in RUN_DIR/NAME.pid when that process still runs
    local f="$RUN_DIR/$1.pid" pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    alive "$pid" && echo "$pid"
}

start_bg() {  # start_bg NAME LOG CMD...: start CMD in its own session, record its PID
    local name="$1" log="$2"; shift 2
    setsid "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
}

group_alive() {  # group_alive PGID: some process of that group still runs (zombies do not count)
    ps -o stat= -g "$1" 2>/dev/null | grep -qv '^Z'
}

stop_pidfile() {  # stop_pidfile NAME [GRACE_S]: SIGTERM the group of RUN_DIR/NAME.pid, SIGKILL what is left after GRACE_S
    local name="$1" grace="${2:-30}" f="$RUN_DIR/$1.pid" pid i
    [ -f "$f" ] || { echo "$name: not running (no $f)"; return 0; }
    pid=$(cat "$f")
    if ! alive "$pid" && ! group_alive "$pid"; then
        echo "$name: not running (stale PID file removed)"; rm -f "$f"; return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 5; i++)); do
        group_alive "$pid" || break
        sleep 0.2
    done
    if group_alive "$pid"; then
        echo "$name: still running after ${grace} s; sending SIGKILL to process group $pid"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$f"
    echo "$name: stopped (PID $pid)"
}

wait_until() {  # wait_until TIMEOUT_S WHAT CMD...: poll CMD (quiet) every second until it succeeds
    local timeout="$1" what="$2" start now; shift 2
    start=$(date +%s)
    until "$@"; do
        now=$(date +%s)
        if (( now - start > timeout )); then return 1; fi
        if (( (now - start) % 30 == 0 && now > start )); then echo "  still waiting for $what ($((now - start)) s)"; fi
        sleep 1
    done
}
