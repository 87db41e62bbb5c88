"""Compute threads: how many cores this process may use, and numba's thread count per call.

numba's thread count is a per-calling-thread setting (``numba.set_num_threads``), so a fit in
one thread can use all cores while a Dask worker that shares its host with other workers uses
its share: nothing oversubscribes the cores and concurrent fits do not change each other's
setting.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def numba_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` numba threads in this thread (None: keep the current
    setting, by default all cores); restored on exit. Yields the number of threads in use.

    The parallel chunk size is left at numba's default on purpose: a chunk size of 1 also applies
    to the loops numba makes of array initializations in a ``parallel=True`` function (e.g. a
    ``np.zeros`` of the output), and cost 3 s per 20M-rating half-sweep at rank 64."""
    import numba

    before = numba.get_num_threads()
    n = before if threads is None else max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(before)
