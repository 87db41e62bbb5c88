"""The ``factorflow`` command line.

Each sub-command lives in its own module ``factorflow/cli/cmd_<name>.py`` that
defines ``add_parser(subparsers)``; the parser it adds sets ``func=run`` where
``run(args) -> int``. Heavy imports (Prefect, Dask) happen inside ``run`` so
``factorflow --help`` stays fast. A :class:`~factorflow.errors.FactorflowError`
is printed as one line (``factorflow: error: ...``, exit 2; 3 for a model the publish gate
rejected), never a traceback; so is an operating-system error (a read-only store, a full
disk, a missing file) and running out of memory (exit 2), unless ``--debug`` is given.
A reader that closes the pipe early (``factorflow models | head -1``) ends the command
quietly with exit 0.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from factorflow import __version__
from factorflow.cli._tracebacks import no_ast_in_tracebacks
from factorflow.errors import FactorflowError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorflow",
        description="Retrain matrix-factorization recommenders and publish their factor tables.",
    )
    parser.add_argument("--version", action="version", version=f"factorflow {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{info.name}").add_parser(sub)
    for command in sub.choices.values():  # also accepted after the command's name
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks instead of one-line errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Prefect's ephemeral server otherwise races its telemetry heartbeat against the flow
    # for the SQLite lock and prints a traceback; the user can still turn it on.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    no_ast_in_tracebacks()  # flows run tasks in threads: see cli/_tracebacks.py
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = bool(args.debug or os.environ.get("FACTORFLOW_DEBUG"))
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except FactorflowError as exc:
        print(f"factorflow: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return _reader_went_away()
    except KeyboardInterrupt:
        print("factorflow: interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as exc:
        if debug:
            raise
        print(f"factorflow: error: {_environment_error(exc)} (run with --debug for the traceback)", file=sys.stderr)
        return 2


def _reader_went_away() -> int:
    """stdout's reader closed the pipe: nothing more to say; keep Python from complaining at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def _environment_error(exc: BaseException) -> str:
    """An OSError or MemoryError as one line naming the path and the cause."""
    if isinstance(exc, MemoryError):
        return "out of memory; use a smaller --rank, fewer --workers, or a machine with more memory"
    assert isinstance(exc, OSError)
    what = exc.strerror or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    where = exc.filename if exc.filename is not None else None
    hint = {errno.EACCES: "check its permissions or choose another --store",
            errno.EROFS: "it is on a read-only filesystem; choose another --store",
            errno.ENOSPC: "free some space or choose another --store"}.get(exc.errno or 0)
    text = f"{where}: {what}" if where else what
    return f"{text}; {hint}" if hint else text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
