"""The pure pipeline steps under the flow: train_model and evaluate_on_split (no Prefect, no Dask)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from factorflow.models.als import ALSConfig

DATA = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import make_split

    store = str(tmp_path_factory.mktemp("store"))
    return make_split(ingest_source(str(DATA), store, "ml"), "random", test_fraction=0.2, seed=5)


def test_serial_als_records_a_learning_curve_on_the_named_split(split):
    from factorflow.pipeline.train import train_model

    result = train_model(ALSConfig(rank=8, sweeps=3), split)
    assert result.kind == "als" and result.params["rank"] == 8 and result.params["sweeps"] == 3
    assert [h["sweep"] for h in result.history] == [1, 2, 3]
    assert all(0.5 < h["test_rmse"] < 1.2 for h in result.history)
    assert result.history[-1]["train_rmse"] < result.history[0]["train_rmse"]
    assert result.factors.user_factors.shape == (610, 8)


def test_evaluate_on_split_reports_model_and_baselines(split):
    from factorflow.evaluation.report import format_table, metrics_rows
    from factorflow.pipeline.evaluate import evaluate_on_split
    from factorflow.pipeline.train import train_model

    factors = train_model(ALSConfig(rank=8, sweeps=5), split).factors
    m = evaluate_on_split(factors, split, rating_range=(0.5, 5.0), top_n=10)
    assert m["split"] == {"id": "random-f0.2-s5", "kind": "random", "n_test": 20167}
    assert m["test"]["n"] == 20167 and m["test"]["warm"]["n"] + m["test"]["cold"]["n"] == 20167
    assert m["test"]["rmse"] < m["baselines"]["bias"]["rmse"] < m["baselines"]["global-mean"]["rmse"]
    assert m["train"]["rmse"] < m["test"]["rmse"]
    json.dumps(m, allow_nan=False)  # publishable as strict JSON
    rows = metrics_rows(m, "als")
    assert [r["model"] for r in rows] == ["als", "baseline: global-mean", "baseline: bias"]
    assert math.isclose(rows[0]["rmse"], round(m["test"]["rmse"], 4))
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["model", "rmse", "mae", "precision@10", "recall@10", "ndcg@10"]


def test_non_iterative_model_trains_through_the_same_path(split):
    from factorflow.pipeline.train import train_model

    result = train_model("bias", split)  # a kind name: its defaults
    assert result.kind == "bias" and result.history == []
    assert result.factors.rank == 0 and result.factors.user_bias.any()


def test_a_hyper_parameter_the_model_does_not_take_is_an_error():
    from factorflow.errors import ParameterError
    from factorflow.models.registry import make_config

    with pytest.raises(ParameterError, match=r"^rank: model bias does not take it \(it takes: reg_user, reg_item"):
        make_config("bias", {"rank": 5})


def test_top_n_other_than_10_keeps_the_stable_at_10_keys(split):
    from factorflow.pipeline.evaluate import evaluate_on_split
    from factorflow.pipeline.train import train_model

    factors = train_model(ALSConfig(rank=4, sweeps=2), split).factors
    m = evaluate_on_split(factors, split, rating_range=(0.5, 5.0), top_n=20, baselines=())
    for key in ("precision@10", "recall@10", "ndcg@10", "precision@20", "recall@20", "ndcg@20"):
        assert 0 <= m["test"][key] <= 1
    assert m["test"]["recall@20"] >= m["test"]["recall@10"]
