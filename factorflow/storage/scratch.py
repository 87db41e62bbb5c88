"""Fitted factor arrays on disk between pipeline steps (a run's scratch, not the published tables)."""

from __future__ import annotations

import io
import posixpath

import numpy as np

from factorflow.factors import FactorArrays
from factorflow.storage.fs import open_path


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
    fs.makedirs(posixpath.dirname(p), exist_ok=True)
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
