"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import logging
import os

DEFAULT_STORE = os.environ.get("FACTORFLOW_STORE", "ff-store")


def add_store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="store root: a local folder or an fsspec URL (default: $FACTORFLOW_STORE or ./ff-store)",
    )


def parse_pairs(text: str | None, param: str) -> dict[str, str] | None:
    """``"a=x,b=y"`` → ``{"a": "x", "b": "y"}`` (ParameterError naming ``param`` if malformed)."""
    from factorflow.errors import ParameterError

    if not text:
        return None
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ParameterError(f"{param}={text!r}: must be comma-separated KEY=VALUE pairs, e.g. user=uid,item=iid")
        out[key.strip()] = value.strip()
    return out


def parse_range(text: str | None, param: str) -> tuple[float, float] | None:
    """``"0.5,5"`` → ``(0.5, 5.0)`` with low < high."""
    from factorflow.errors import ParameterError

    if not text:
        return None
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise ParameterError(f"{param}={text!r}: must be LOW,HIGH, e.g. 0.5,5") from None
    if not low < high:
        raise ParameterError(f"{param}={text!r}: LOW must be below HIGH")
    return low, high


def add_ingest_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``ingest`` and ``retrain``."""
    g = parser.add_argument_group("ingest")
    g.add_argument("--format", dest="fmt", choices=["movielens-csv", "ml100k", "ml1m", "delimited"],
                   help="input format (default: detected from the first bytes)")
    g.add_argument("--columns",
                   help="column mapping for --format delimited: user=COL,item=COL,rating=COL[,timestamp=COL] "
                        "(header names, or 1-based positions for a file without header)")
    g.add_argument("--delimiter", help="field delimiter for --format delimited (default: guessed; '\\t' for tab)")
    g.add_argument("--rating-range", metavar="LOW,HIGH", help="valid ratings, e.g. 0.5,5 (default: inferred)")
    g.add_argument("--max-reject-fraction", type=float, default=0.01,
                   help="fail when more than this fraction of rows is rejected (default: 0.01)")
    g.add_argument("--test-source", metavar="TEST",
                   help="a given test file sharing the id space (e.g. MovieLens-100K u1.test)")


def ingest_options(args: argparse.Namespace, dataset: str | None = None):
    """The ``IngestOptions`` built from ``add_ingest_args`` options."""
    from pydantic import ValidationError

    from factorflow.config import IngestOptions
    from factorflow.errors import ParameterError

    try:
        return IngestOptions(
            dataset=dataset, format=args.fmt, columns=parse_pairs(args.columns, "--columns"),
            delimiter=args.delimiter,
            rating_range=parse_range(args.rating_range, "--rating-range"),
            max_reject_fraction=args.max_reject_fraction, test_source=args.test_source,
        )
    except ValidationError as exc:
        raise ParameterError(one_line(exc)) from None


def one_line(exc: Exception, options: dict[str, str] | None = None) -> str:
    """A pydantic ValidationError as one line: '--option=value: message; ...', naming each field
    by the option the user typed (``options`` maps field names that differ, e.g. n_blocks → --blocks)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    parts = []
    for e in errors():
        field = ".".join(str(p) for p in e["loc"])
        name = (options or {}).get(field) or "--" + field.replace("_", "-")
        value = f"={e['input']!r}" if "input" in e and not isinstance(e["input"], dict) else ""
        parts.append(f"{name}{value}: {e['msg']}")
    return "; ".join(parts)


def ensure_writable_store(store: str) -> None:
    """Create the store folder and prove a file can be written there, else a one-line error."""
    from factorflow.errors import ParameterError
    from factorflow.storage.fs import StoreAccessError, probe_writable

    try:
        probe_writable(store)
    except StoreAccessError as exc:  # an object store: its message names the URL and what to do
        raise ParameterError(f"--store {exc}") from None
    except OSError as exc:
        raise ParameterError(f"--store {store}: cannot write there ({exc.strerror or exc}); "
                             "choose a folder you can write to") from None


class _NoUserErrorTraceback(logging.Formatter):
    """Delegates to a handler's formatter, but shows a FactorflowError as its one line, no traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        from factorflow.errors import FactorflowError

        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, FactorflowError):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def quiet_user_error_tracebacks() -> None:
    """On the console, Prefect logs a failed task's traceback; for a user error (bad file or
    parameter) the one-line message is the whole story. The Prefect API/UI keeps the full record."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _NoUserErrorTraceback):
            handler.setFormatter(_NoUserErrorTraceback(handler.formatter))
