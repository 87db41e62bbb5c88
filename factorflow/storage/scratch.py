"""A run's scratch on disk between pipeline steps: factor arrays, history, metrics (not the published tables).

Files of ``STORE/runs/RUN/`` are named in :mod:`factorflow.storage.layout` (``RUN_*``).
"""

from __future__ import annotations

import io
import posixpath
from typing import Any

import numpy as np

from factorflow.factors import FactorArrays
from factorflow.storage import layout
from factorflow.storage import parquet as pqio
from factorflow.storage.fs import makedirs, open_path, read_json, url_of, write_json
from factorflow.storage.runs import RunRef


def save_factors(path: str, factors: FactorArrays) -> None:
    """Write ``factors`` to ``path`` (an .npz; local path or fsspec URL)."""
    fs, p = open_path(path)
    buf = io.BytesIO()
    extra = {f"extra__{k}": v for k, v in factors.extra.items()}
    np.savez(
        buf,
        user_factors=factors.user_factors,
        item_factors=factors.item_factors,
        user_bias=factors.user_bias,
        item_bias=factors.item_bias,
        global_mean=np.float64(factors.global_mean),
        **extra,
    )
    makedirs(fs, posixpath.dirname(p))
    with fs.open(p, "wb") as f:
        f.write(buf.getvalue())


def load_factors(path: str) -> FactorArrays:
    fs, p = open_path(path)
    with fs.open(p, "rb") as f:
        z = np.load(io.BytesIO(f.read()), allow_pickle=False)
    extra = {k[len("extra__"):]: z[k] for k in z.files if k.startswith("extra__")}
    return FactorArrays(
        z["user_factors"], z["item_factors"], z["user_bias"], z["item_bias"],
        float(z["global_mean"]), extra,
    )


# --- a run's scratch folder, by RunRef ---------------------------------------------------------


def save_trained(run: RunRef, factors: FactorArrays, history: list[dict[str, Any]],
                 network: bytes | None = None) -> None:
    """The train step's output: ``factors.npz``, ``history.json`` (the learning curve) and, for a
    kind served by its network, the ``.keras`` file's bytes as ``network.keras``."""
    save_factors(run.file(layout.RUN_FACTORS), factors)
    if network is not None:
        write_run_bytes(run, layout.NETWORK_FILE, network)
    write_run_json(run, layout.RUN_HISTORY, history)
    write_run_json(run, layout.RUN_TRAINED, {"kind": run.kind, "params": run.params,
                                             "dask_workers": run.dask_workers})


def load_run_factors(run: RunRef) -> FactorArrays:
    return load_factors(run.file(layout.RUN_FACTORS))


def load_run_network(run: RunRef) -> bytes | None:
    """The bytes of the run's ``network.keras`` (None for a kind served by its tables)."""
    fs, p = open_path(run.file(layout.NETWORK_FILE))
    if not fs.exists(p):
        return None
    with fs.open(p, "rb") as f:
        return f.read()


def load_history(run: RunRef) -> list[dict[str, Any]]:
    return read_run_json(run, layout.RUN_HISTORY)


def write_run_json(run: RunRef, name: str, obj: Any) -> str:
    """Write ``obj`` as JSON to a file of the run folder; returns its URL."""
    fs, p = open_path(run.file(name))
    write_json(fs, p, obj)
    return run.file(name)


def read_run_json(run: RunRef, name: str) -> Any:
    fs, p = open_path(run.file(name))
    return read_json(fs, p)


def write_run_bytes(run: RunRef, name: str, data: bytes) -> str:
    """Write raw bytes (e.g. the learning-curve PNG) to a file of the run folder; returns its URL."""
    fs, p = open_path(run.file(name))
    with fs.open(p, "wb") as f:
        f.write(data)
    return url_of(fs, p)


def write_run_table(run: RunRef, name: str, table: Any) -> str:
    """Write a Parquet table to a file of the run folder; returns its URL."""
    fs, p = open_path(run.file(name))
    pqio.write_table(fs, p, table)
    return run.file(name)


def write_arrays(path: str, **arrays: np.ndarray) -> None:
    """Named arrays as an .npz at ``path`` (local path or fsspec URL; e.g. a blend's validation slice)."""
    fs, p = open_path(path)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    makedirs(fs, posixpath.dirname(p))
    with fs.open(p, "wb") as f:
        f.write(buf.getvalue())


def read_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays :func:`write_arrays` wrote (no pickles)."""
    fs, p = open_path(path)
    with fs.open(p, "rb") as f:
        z = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return {k: z[k] for k in z.files}


def read_run_table(path: str) -> Any:
    fs, p = open_path(path)
    return pqio.read_table(fs, p)
