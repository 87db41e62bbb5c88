"""The OpenBLAS that top-N scoring calls directly, made single-threaded for a scope.

Top-N scores a block of users tile by tile on a few plain threads (:mod:`factorflow.serving.topn`):
each thread's compiled kernel (:func:`factorflow.serving._select.rank_rows`) calls ``cblas_sgemm``
for a small product and selects from its result while it is in cache. A multi-threaded OpenBLAS
called from two threads at once is 10-20× slower than one call at a time (measured on 2 cores:
its threads fight over the cores), so the products run with one BLAS thread each inside
:func:`single_threaded_blas`.

The library is the OpenBLAS NumPy is linked with (found among the loaded libraries; NumPy's own
``numpy.libs`` copy first), and its ``cblas_sgemm``, thread setter and getter all come from it.
Its thread count is process-wide: the context sets it to 1 on entry and restores it when the last
concurrent user leaves (a count under a lock, so overlapping scopes in several threads never
restore it early). A NumPy product that another thread makes meanwhile runs on one core. Any
other BLAS: :func:`openblas` is None and top-N falls back to ``np.matmul`` on one thread.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# (thread setter, getter, cblas_sgemm, config string) as each OpenBLAS build names them
_NAMES = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_", "scipy_cblas_sgemm64_",
           "scipy_openblas_get_config64_"),
          ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads", "scipy_cblas_sgemm",
           "scipy_openblas_get_config"),
          ("openblas_set_num_threads64_", "openblas_get_num_threads64_", "cblas_sgemm64_", "openblas_get_config64_"),
          ("openblas_set_num_threads", "openblas_get_num_threads", "cblas_sgemm", "openblas_get_config"))
ROW_MAJOR, NO_TRANS = 101, 111  # CBLAS enum values


@dataclass(frozen=True)
class OpenBLAS:
    """Entry points of one loaded OpenBLAS: ``sgemm`` is its ``cblas_sgemm`` as a ctypes function
    (order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) that compiled code can call."""

    path: str
    set_threads: object
    get_threads: object
    sgemm: object


_lock = threading.Lock()
_users = 0
_saved = 1
_found: OpenBLAS | None | bool = False  # False: not looked up yet; None: not found


def _candidates() -> list[str]:
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
    return paths


def _load(path: str) -> OpenBLAS | None:
    try:
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0))
    except OSError:
        return None
    for set_name, get_name, gemm_name, config_name in _NAMES:
        if not all(hasattr(lib, name) for name in (set_name, get_name, gemm_name, config_name)):
            continue
        config = getattr(lib, config_name)
        config.argtypes, config.restype = [], ctypes.c_char_p
        blas_int = ctypes.c_int64 if b"USE64BITINT" in (config() or b"") else ctypes.c_int32
        set_fn, get_fn, gemm = getattr(lib, set_name), getattr(lib, get_name), getattr(lib, gemm_name)
        set_fn.argtypes, set_fn.restype = [ctypes.c_int], None
        get_fn.argtypes, get_fn.restype = [], ctypes.c_int
        gemm.restype = None
        gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, blas_int, blas_int, blas_int, ctypes.c_float,
                         ctypes.c_void_p, blas_int, ctypes.c_void_p, blas_int, ctypes.c_float, ctypes.c_void_p,
                         blas_int]
        return OpenBLAS(path, set_fn, get_fn, gemm)
    return None


def openblas() -> OpenBLAS | None:
    """NumPy's OpenBLAS (looked up once), or None when NumPy uses another BLAS."""
    global _found
    if _found is False:
        _found = next((lib for lib in map(_load, _candidates()) if lib is not None), None)
    return _found  # type: ignore[return-value]


@contextmanager
def single_threaded_blas() -> Iterator[OpenBLAS | None]:
    """Run the block with :func:`openblas` on one thread; yields it (None: another BLAS, left as it
    is — make no concurrent products then)."""
    global _users, _saved
    lib = openblas()
    if lib is None:
        yield None
        return
    with _lock:
        if _users == 0:
            _saved = int(lib.get_threads())  # type: ignore[operator]
            lib.set_threads(1)  # type: ignore[operator]
        _users += 1
    try:
        yield lib
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                lib.set_threads(_saved)  # type: ignore[operator]


def _reset_after_fork() -> None:
    """A forked child starts with no scope open (and the parent's thread count if one was)."""
    global _users, _lock
    if _users and _found:
        _found.set_threads(_saved)  # type: ignore[union-attr,operator]
    _users, _lock = 0, threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
