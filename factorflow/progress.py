"""Progress reporting that knows nothing about Prefect.

Long steps take a ``progress`` callable ``(done, total, message) -> None``.
The CLI passes one that drives a tqdm bar; Prefect tasks pass one that logs
and updates a progress artifact; tests pass nothing (``None``) or a recorder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    def __call__(self, done: float, total: float | None, message: str = "") -> None: ...


def report(progress: Progress | None, done: float, total: float | None, message: str = "") -> None:
    """Call ``progress`` if one was given."""
    if progress is not None:
        progress(done, total, message)


@contextmanager
def tqdm_progress(desc: str, unit: str = "it", enabled: bool | None = None) -> Iterator[Progress]:
    """A ``Progress`` that drives one tqdm bar on stderr (disabled when not a TTY unless forced)."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    bar = tqdm(desc=desc, unit=unit, disable=not enabled, leave=True, dynamic_ncols=True)

    def _update(done: float, total: float | None, message: str = "") -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        yield _update
    finally:
        bar.close()
