"""Learning-curve plot (PNG) from a model's per-step history."""

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
