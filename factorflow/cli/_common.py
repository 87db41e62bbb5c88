"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import os

DEFAULT_STORE = os.environ.get("FACTORFLOW_STORE", "ff-store")


def add_store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="store root: a local folder or an fsspec URL (default: $FACTORFLOW_STORE or ./ff-store)",
    )
