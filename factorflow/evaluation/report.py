"""Metrics as tables: one row per model (the model, then each baseline) for the CLI and the Prefect UI."""

from __future__ import annotations

from typing import Any


def metrics_rows(metrics: dict[str, Any], model_kind: str, top_n: int = 10) -> list[dict[str, Any]]:
    """One row per model (the model, then each baseline) for tables and artifacts."""
    keys = ("rmse", "mae", f"precision@{top_n}", f"recall@{top_n}", f"ndcg@{top_n}")

    def row(name: str, m: dict[str, Any]) -> dict[str, Any]:
        r: dict[str, Any] = {"model": name}
        for k in keys:
            v = m.get(k)
            r[k] = None if v is None else round(float(v), 4)
        return r

    rows = [row(model_kind, metrics["test"])]
    rows += [row(f"baseline: {k}", v) for k, v in metrics["baselines"].items()]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``rows`` (same keys in each)."""
    if not rows:
        return ""
    cols = list(rows[0])
    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [[cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
