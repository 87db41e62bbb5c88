"""factorflow: retrain matrix-factorization recommenders and publish their factor tables.

The Python API (:mod:`factorflow.api`) is loaded on first use, so ``import factorflow`` (and
``factorflow --help``) stays light::

    factorflow.load_model(store, name, version=None)   # -> factorflow.api.Model
    factorflow.retrain(source, store="ff-store", model="als", name=None, **options)
    factorflow.backfill(source, store, start, end, every="30d", model="als", publish=False, **options)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Model", "__version__", "backfill", "load_model", "retrain"]

_API = ("Model", "backfill", "load_model", "retrain")


def __getattr__(name: str) -> Any:
    if name in _API:
        from factorflow import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
