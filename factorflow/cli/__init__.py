"""The ``factorflow`` command line.

Each sub-command lives in its own module ``factorflow/cli/cmd_<name>.py`` that
defines ``add_parser(subparsers)``; the parser it adds sets ``func=run`` where
``run(args) -> int``. Heavy imports (Prefect, Dask) happen inside ``run`` so
``factorflow --help`` stays fast. A :class:`~factorflow.errors.FactorflowError`
is printed as one line (``factorflow: error: ...``, exit 2), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import FactorflowError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorflow",
        description="Retrain matrix-factorization recommenders and publish their factor tables.",
    )
    parser.add_argument("--version", action="version", version=f"factorflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{info.name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Prefect's ephemeral server otherwise races its telemetry heartbeat against the flow
    # for the SQLite lock and prints a traceback; the user can still turn it on.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FactorflowError as exc:
        print(f"factorflow: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("factorflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
