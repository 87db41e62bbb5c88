"""The ``compare`` leaderboard: one row per model on one split, best (lowest test RMSE) first.

Pure code, no Prefect and no store: the flow hands in one *outcome* per model — what it got
back from the model's tasks — and gets rows back; :mod:`factorflow.storage.leaderboards`
stores them. An outcome is a dict::

    {"kind": "als", "status": "evaluated" | "published" | "rejected" | "failed",
     "metrics": {...} | None,     # evaluate's dict (model.json "metrics"), None if it never ran
     "seconds": 12.3 | None,      # wall time of the fit
     "validation_rmse": 0.86 | None,  # RMSE on a blend's validation slice (a blend, or its component)
     "version": "..." | None,     # the version published (CURRENT now names it)
     "note": "..." | None}        # why a model was rejected or failed (one line)

A row has :data:`COLUMNS`: the kind, the held-out test metrics at 10 (RMSE, MAE,
precision/recall/NDCG@10) of the split, the validation RMSE (a blend's on its validation slice of
TRAIN, and a component's fitted without that slice; None for the other models), the fit's
seconds, the published version (None when nothing was published, including a rejected model: its
kept version is named in the note), the status and the note. Rows sort by test RMSE ascending; a model without one (it
failed before evaluation, or its RMSE is not finite) sorts last, by kind.
"""

from __future__ import annotations

import math
from typing import Any

#: Held-out metrics of a row (``model.json`` ``metrics.test`` keys).
METRICS = ("rmse", "mae", "precision@10", "recall@10", "ndcg@10")
#: The columns of a leaderboard row, in order.
COLUMNS = ("kind", *METRICS, "validation_rmse", "train_seconds", "version", "status", "note")
#: Outcome statuses; "rejected" and "failed" are failures of that model (the others are not).
STATUSES = ("evaluated", "published", "rejected", "failed")


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def leaderboard_row(outcome: dict[str, Any]) -> dict[str, Any]:
    """One row (:data:`COLUMNS`) from one model's outcome (module docstring); missing or
    non-finite numbers are None."""
    status = outcome.get("status") or ("failed" if outcome.get("metrics") is None else "evaluated")
    if status not in STATUSES:
        raise ValueError(f"status={status!r}: must be one of {', '.join(STATUSES)}")
    test = (outcome.get("metrics") or {}).get("test") or {}
    row: dict[str, Any] = {"kind": str(outcome["kind"])}
    row.update({k: _finite(test.get(k)) for k in METRICS})
    row["validation_rmse"] = _finite(outcome.get("validation_rmse"))
    row["train_seconds"] = _finite(outcome.get("seconds"))
    row["version"] = outcome.get("version") if status == "published" else None
    row["status"] = status
    row["note"] = outcome.get("note") or None
    return row


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` by test RMSE ascending; rows without a finite RMSE last; ties by kind."""
    def key(r: dict[str, Any]) -> tuple[int, float, str]:
        rmse = _finite(r.get("rmse"))
        return (rmse is None, rmse if rmse is not None else 0.0, str(r.get("kind")))

    return sorted(rows, key=key)


def build_leaderboard(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sorted rows of ``outcomes`` (one per model)."""
    return sort_rows([leaderboard_row(o) for o in outcomes])


def failures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of models that were rejected by the publish gate or failed."""
    return [r for r in rows if r["status"] in ("rejected", "failed")]


def exit_code(rows: list[dict[str, Any]]) -> int:
    """0 when every model did what was asked; 3 when the only failures are publish-gate
    rejections (as ``retrain``); 2 when any model failed otherwise."""
    statuses = {r["status"] for r in failures(rows)}
    return 2 if "failed" in statuses else 3 if statuses else 0


def display_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` formatted for a text table or a Prefect table artifact: metrics to 4 decimals,
    seconds to 1, the note left out (printed below the table); missing values None. The
    ``val rmse`` column is shown only when some row has one (a blend was compared)."""
    out = []
    validation = any(r.get("validation_rmse") is not None for r in rows)
    for r in rows:
        d: dict[str, Any] = {"kind": r["kind"]}
        d.update({k: None if r[k] is None else f"{r[k]:.4f}" for k in METRICS})
        if validation:
            d["val rmse"] = None if r.get("validation_rmse") is None else f"{r['validation_rmse']:.4f}"
        d["train s"] = None if r["train_seconds"] is None else f"{r['train_seconds']:.1f}"
        d["version"] = r["version"]
        d["status"] = r["status"]
        out.append(d)
    return out
