"""The publish gate: nothing degenerate becomes CURRENT. A rejected model is kept as a version
marked rejected, CURRENT and the live model stay as they were, and the CLI exits 3 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_env import error_lines, run_cli

from factorflow.evaluation.gate import publish_blockers
from factorflow.factors import FactorArrays


def _factors(k: int = 2, value: float = 0.1) -> FactorArrays:
    return FactorArrays(np.full((3, k), value, np.float32), np.full((4, k), value, np.float32),
                        np.zeros(3, np.float32), np.zeros(4, np.float32), 3.5)


def _metrics(rmse: float | None = 0.9, base: float = 1.0, n_test: int = 10, warm: int = 8) -> dict:
    return {"split": {"id": "random-f0.2-s42", "n_test": n_test},
            "test": {"rmse": rmse, "warm": {"n": warm, "rmse": rmse}, "cold": {"n": n_test - warm}},
            "baselines": {"global-mean": {"rmse": base}, "bias": {"rmse": base * 0.95}}}


def test_a_sound_model_passes():
    assert publish_blockers(_metrics(), _factors(), "als") == []


@pytest.mark.parametrize("metrics, factors, phrase", [
    (_metrics(), _factors(value=np.nan), "non-finite values in its user factors, item factors"),
    (_metrics(n_test=0, warm=0), _factors(), "has no test ratings"),
    (_metrics(warm=0), _factors(), "(10 of 10 are cold-start)"),
    (_metrics(rmse=None), _factors(), "test RMSE on split random-f0.2-s42 is None"),
    (_metrics(rmse=float("nan")), _factors(), "is nan"),
    (_metrics(rmse=1.2, base=1.0), _factors(), ("test RMSE 1.2000 on split random-f0.2-s42 is worse "
                                                 "than the global-mean baseline's 1.0000")),
])
def test_degenerate_models_are_blocked(metrics, factors, phrase):
    reasons = publish_blockers(metrics, factors, "als")
    assert reasons and phrase in "; ".join(reasons)


def test_the_global_mean_model_is_not_compared_with_itself():
    assert publish_blockers(_metrics(rmse=1.0, base=1.0), _factors(k=0), "global-mean") == []


# --- through the CLI, over a live model -------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A store whose model 'als' is published from learnable synthetic data."""
    from factorflow.data.synth import write_synthetic_csv

    d = tmp_path_factory.mktemp("gate")
    src = d / "train.csv"
    write_synthetic_csv(str(src), 300, 200, 15_000, seed=5)
    store, home = d / "store", d / "prefect"
    proc = run_cli(["retrain", str(src), "--store", str(store), "--sweeps", "3", "--workers", "1"], home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    current = (store / "models" / "als" / "CURRENT").read_text()
    return d, store, home, current


def _assert_rejected(proc, store: Path, current: str, phrase: str) -> None:
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [line] = error_lines(proc.stderr)
    assert line.startswith("factorflow: error: model als was not published: ") and phrase in line
    assert f"CURRENT still names {current.strip()}" in line
    assert (store / "models" / "als" / "CURRENT").read_text() == current
    versions = sorted((store / "models" / "als" / "versions").iterdir())
    metas = [json.loads((v / "model.json").read_text()) for v in versions]
    rejected = [m for m in metas if m.get("status") == "rejected"]
    assert rejected and rejected[-1]["version"] in line and phrase in "; ".join(rejected[-1]["rejected_because"])


def test_three_ratings_do_not_replace_the_live_model(live):
    d, store, home, current = live
    tiny = d / "three.csv"
    tiny.write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,3.0,2\n2,1,5.0,3\n")
    proc = run_cli(["retrain", str(tiny), "--store", str(store), "--name", "als", "--workers", "1"], home)
    _assert_rejected(proc, store, current, "cold-start")
    rec = run_cli(["recommend", "--model", "als", "--user", "1", "-n", "5", "--json", "--store", str(store)], home)
    assert rec.returncode == 0 and len(json.loads(rec.stdout)) == 5


def test_a_given_test_set_of_only_new_users_is_rejected(live):
    d, store, home, current = live
    test = d / "new_users.csv"
    test.write_text("userId,movieId,rating,timestamp\n"
                    + "".join(f"{u},{i},4.0,{u}\n" for u in range(900_001, 900_021) for i in (1, 2, 3)))
    proc = run_cli(["retrain", str(d / "train.csv"), "--test-source", str(test), "--store", str(store),
                    "--name", "als", "--sweeps", "2", "--workers", "1"], home)
    _assert_rejected(proc, store, current, "(60 of 60 are cold-start)")
