"""NumPy's BLAS made single-threaded for a scope, so several threads can each run their own products.

Top-N scores a block of users tile by tile on a few plain threads (:mod:`factorflow.serving.topn`),
each thread running a small ``np.matmul`` and then selecting from its result while it is in cache.
A multi-threaded OpenBLAS called from two threads at once is 10-20× slower than one call at a
time (measured on 2 cores: its threads fight over the cores), so the products run with one BLAS
thread each inside :func:`single_threaded_blas`.

OpenBLAS's thread count is process-wide: the context sets it to 1 on entry and restores it when
the last concurrent user leaves (a count under a lock, so overlapping scopes in several threads
never restore it early). A product that another thread makes meanwhile runs on one core. Only
NumPy's own OpenBLAS is handled (found among the loaded libraries); with any other BLAS the
context yields False and the caller must not make concurrent products.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SETTERS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"))

_lock = threading.Lock()
_users = 0
_saved = 1
_api: tuple[object, object] | None | bool = False  # False: not looked up yet; None: not found


def _numpy_openblas() -> tuple[object, object] | None:
    """(set, get) of the OpenBLAS that NumPy is linked with, or None."""
    import numpy as np

    libs_dir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    paths: list[str] = []
    try:  # the libraries this process has loaded (Linux)
        with open("/proc/self/maps") as f:
            loaded = {line.split()[-1] for line in f if "openblas" in line.lower()}
        paths += sorted(loaded, key=lambda p: (Path(p).parent != libs_dir, p))  # NumPy's own first
    except OSError:
        pass
    if libs_dir.is_dir():
        paths += sorted(str(p) for p in libs_dir.glob("*openblas*"))
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0))
        except OSError:
            continue
        for set_name, get_name in _SETTERS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                set_fn, get_fn = getattr(lib, set_name), getattr(lib, get_name)
                set_fn.argtypes, set_fn.restype = [ctypes.c_int], None
                get_fn.argtypes, get_fn.restype = [], ctypes.c_int
                return set_fn, get_fn
    return None


def _blas_api() -> tuple[object, object] | None:
    global _api
    if _api is False:
        _api = _numpy_openblas()
    return _api  # type: ignore[return-value]


@contextmanager
def single_threaded_blas() -> Iterator[bool]:
    """Run the block with NumPy's OpenBLAS on one thread; yields whether that could be done
    (False: an unknown BLAS, left as it is — make no concurrent products then)."""
    global _users, _saved
    api = _blas_api()
    if api is None:
        yield False
        return
    set_fn, get_fn = api
    with _lock:
        if _users == 0:
            _saved = int(get_fn())  # type: ignore[operator]
            set_fn(1)  # type: ignore[operator]
        _users += 1
    try:
        yield True
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                set_fn(_saved)  # type: ignore[operator]


def _reset_after_fork() -> None:
    """A forked child starts with no scope open (and the parent's thread count if one was)."""
    global _users, _lock
    if _users and _api:
        _api[0](_saved)  # type: ignore[index,operator]
    _users, _lock = 0, threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
