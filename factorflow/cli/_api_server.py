"""The child process behind a CLI run's private Prefect API: uvicorn serving Prefect's app.

Started by :func:`factorflow.cli._prefect_api.prefect_api` as
``python -m factorflow.cli._api_server --fd FD --parent PID``. It serves on the listening
socket it inherits (bound by the parent, so there is no port race) and never outlives its
parent: on Linux the kernel sends it SIGTERM when the parent dies (``PR_SET_PDEATHSIG``),
and on every platform a watchdog thread notices the parent is gone within a second and
shuts the server down (hard exit if a clean shutdown takes longer than 10 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time

GRACE_S = 10.0


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        except (OSError, AttributeError):
            pass  # the watchdog below still covers it
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's clean shutdown
        time.sleep(GRACE_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="factorflow-api-server")
    p.add_argument("--fd", type=int, required=True, help="inherited bound TCP socket")
    p.add_argument("--parent", type=int, required=True, help="pid to die with")
    args = p.parse_args(argv)
    _die_with_parent(args.parent)

    import uvicorn

    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, log_level="error",
                            lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
