"""The Prefect artifacts of an evaluated run: what the UI shows beside a flow run.

- ``metrics`` (table): one row per model — the trained model, then each baseline — with the
  held-out RMSE, MAE, precision/recall/NDCG@N and the test count, the exact values of the run's
  ``metrics.json`` (``STORE/runs/RUN/metrics.json``; nothing rounded).
- ``summary-KIND`` (markdown): the metrics table, the learning curve (sweep/epoch, train and
  test RMSE), the learning-curve PNG embedded as a data URI (when under
  :data:`MAX_EMBEDDED_BYTES`) and its URL in the store.
"""

from __future__ import annotations

import base64
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

MAX_EMBEDDED_BYTES = 512 * 1024


def metrics_table_rows(metrics: dict[str, Any], kind: str, top_n: int = 10) -> list[dict[str, Any]]:
    """The ``metrics`` table: ``{"model", "rmse", "mae", "precision@N", "recall@N", "ndcg@N", "n"}``
    per model, values exactly as in ``metrics`` (``test`` for the model, ``baselines.NAME`` for each
    baseline)."""
    keys = ("rmse", "mae", f"precision@{top_n}", f"recall@{top_n}", f"ndcg@{top_n}", "n")

    def row(name: str, m: dict[str, Any]) -> dict[str, Any]:
        return {"model": name, **{k: m.get(k) for k in keys}}

    return [row(kind, metrics["test"]), *(row(f"baseline: {b}", m) for b, m in metrics["baselines"].items())]


def evaluation_artifacts(metrics: dict[str, Any], history: list[dict[str, Any]], kind: str, split: str,
                         png: str | None, top_n: int = 10) -> None:
    """Create the ``metrics`` table and the ``summary-KIND`` markdown of one evaluated run."""
    from factorflow.evaluation.report import format_table, metrics_rows

    rows = metrics_table_rows(metrics, kind, top_n)
    create_table_artifact(rows, key="metrics",
                          description=f"{kind}: held-out metrics on split {split} ({metrics['split']['n_test']:,} "
                                      "test ratings); the values of the run's metrics.json")
    curve = "\n".join(
        f"| {h.get('sweep', h.get('epoch', i + 1))} | {_num(h.get('train_rmse'))} | {_num(h.get('test_rmse'))} |"
        for i, h in enumerate(history))
    parts = [f"# {kind} on split `{split}`", "", "```", format_table(metrics_rows(metrics, kind, top_n)), "```", ""]
    if history:
        parts += ["## Learning curve", "", "| step | train RMSE | test RMSE |", "|---|---|---|", curve, ""]
    if png:
        image = _png_bytes(png)
        if image is not None and len(image) <= MAX_EMBEDDED_BYTES:
            parts += [f"![{kind} learning curve](data:image/png;base64,{base64.b64encode(image).decode()})", ""]
        parts.append(f"Learning-curve plot: `{png}`")
    create_markdown_artifact("\n".join(parts), key=f"summary-{_key(kind)}",
                             description=f"{kind} on {split}: metrics and learning curve")


def _num(x: Any) -> str:
    return "" if x is None else f"{x:.4f}"


def _key(text: str) -> str:
    """An artifact key: lowercase letters, digits and dashes."""
    import re

    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "run"


def _png_bytes(url: str) -> bytes | None:
    from factorflow.storage.fs import open_path

    try:
        fs, path = open_path(url)
        return fs.cat_file(path)
    except (OSError, ValueError):
        return None
