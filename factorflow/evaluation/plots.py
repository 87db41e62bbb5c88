"""Plots (PNG bytes, matplotlib Agg): a model's learning curve; a backfill's metrics over its cutoffs."""

from __future__ import annotations

from typing import Any


def learning_curve_png(history: list[dict[str, Any]], *, title: str,
                       baselines: dict[str, float] | None = None, split: str = "") -> bytes:
    """PNG bytes: train and held-out RMSE per step (sweep, epoch, sample), the validation RMSE of an
    early-stopping fit (a slice of train) when recorded, baselines' held-out RMSE as dashed lines."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    unit = next((u for u in ("sweep", "epoch", "sample") if history and u in history[0]), "step")
    steps = [h.get(unit, i + 1) for i, h in enumerate(history)]
    ax.plot(steps, [h["train_rmse"] for h in history], marker="o", label="train RMSE")
    if history and "val_rmse" in history[0]:
        ax.plot(steps, [h["val_rmse"] for h in history], marker="o", label="validation RMSE (slice of train)")
    if history and "test_rmse" in history[0]:
        ax.plot(steps, [h["test_rmse"] for h in history], marker="o", label=f"test RMSE ({split})")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, linestyle="--", color=f"C{i + 3}", label=f"{name} (test)")
    ax.set_xlabel(unit)
    ax.set_ylabel("RMSE")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def backfill_png(rows: list[dict[str, Any]], *, title: str = "backfill") -> bytes:
    """PNG bytes: a backfill's held-out metrics against its cutoffs — RMSE and MAE (and the bias
    baseline's RMSE, dashed) on top, NDCG@10 below. ``rows`` have ``cutoff`` (ISO date or
    datetime, UTC) and the metric keys ``rmse``, ``mae``, ``ndcg@10``, ``bias_rmse`` (None: no
    point, e.g. a failed or skipped cutoff)."""
    import io
    from datetime import datetime

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def when(label: str) -> datetime:
        return datetime.fromisoformat(str(label).replace("Z", "+00:00"))

    def series(key: str) -> tuple[list[datetime], list[float]]:
        points = [(when(r["cutoff"]), float(r[key])) for r in rows if r.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 5.6), dpi=110, sharex=True)
    for key, label, style in (("rmse", "test RMSE", "-o"), ("mae", "test MAE", "-s"),
                              ("bias_rmse", "bias baseline RMSE", "--")):
        xs, ys = series(key)
        if xs:
            top.plot(xs, ys, style, label=label)
    top.set_ylabel("error (rating units)")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend()
    xs, ys = series("ndcg@10")
    if xs:
        bottom.plot(xs, ys, "-o", color="C3", label="NDCG@10")
    bottom.set_ylabel("NDCG@10")
    bottom.set_xlabel("cutoff (train before it, test in the window after it)")
    bottom.grid(alpha=0.3)
    bottom.legend()
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
