"""The ``blend`` kind: exact tables, the flows' step-wise fit equal to the serial one, the slice never
touching the test split, refusals, fold-in and ``similar`` on a published blend, the leaderboard's
validation column, and one ``compare`` run end to end (slow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from factorflow.errors import ParameterError
from factorflow.models import registry
from factorflow.models.blend import Blend, BlendConfig

#: Quick components that fold in (ALS and PMF solve, SVD projects): fitted twice each in ~1 s.
COMPONENTS = [{"kind": "als", "rank": 4, "sweeps": 6, "reg": 2.0}, {"kind": "svd", "rank": 3},
              {"kind": "pmf", "rank": 3, "sweeps": 4, "reg": 2.0}]
N_USERS, N_ITEMS = 200, 120


@pytest.fixture(scope="module")
def data():
    """Planted r = 3.5 + b + c + w·u + noise on half stars, 35% dense; a random 80/20 split."""
    rng = np.random.default_rng(5)
    w, u = rng.normal(0, 0.6, (N_USERS, 3)), rng.normal(0, 0.6, (N_ITEMS, 3))
    b, c = rng.normal(0, 0.3, N_USERS), rng.normal(0, 0.4, N_ITEMS)
    rows, cols = np.nonzero(rng.random((N_USERS, N_ITEMS)) < 0.35)
    r = 3.5 + b[rows] + c[cols] + np.einsum("ij,ij->i", w[rows], u[cols]) + rng.normal(0, 0.3, len(rows))
    r = np.clip(np.round(r * 2) / 2, 0.5, 5.0)
    test = rng.random(len(rows)) < 0.2
    train = sp.csr_matrix((r[~test], (rows[~test], cols[~test])), shape=(N_USERS, N_ITEMS), dtype=np.float32)
    return train, (rows[test], cols[test], r[test])


@pytest.fixture(scope="module")
def blend(data):
    return Blend(BlendConfig(components=COMPONENTS)).fit(data[0])


def _all_pairs() -> tuple[np.ndarray, np.ndarray]:
    u, i = np.meshgrid(np.arange(N_USERS), np.arange(N_ITEMS), indexing="ij")
    return u.ravel(), i.ravel()


def test_tables_predict_the_weighted_sum_of_the_components(blend, data):
    info, tables = blend.fit_info(), blend.factors()
    a = np.array(info["weights"])
    assert (a >= 0).all() and a.sum() > 0.5 and len(blend.fits) == 3
    users, items = _all_pairs()
    expected = info["intercept"] + sum(w * f.factors.predict(users, items) for w, f in zip(a, blend.fits, strict=True))
    np.testing.assert_allclose(tables.predict(users, items), expected, atol=1e-5, rtol=0)
    assert tables.rank == sum(f.factors.rank for f, w in zip(blend.fits, a, strict=True) if w > 0)
    # the record model.json keeps is strict JSON, and names each component's validation RMSE
    record = json.loads(json.dumps(info, allow_nan=False))
    assert [c["kind"] for c in record["components"]] == ["als", "svd", "pmf"]
    assert all(0.2 < c["validation_rmse"] < 1.5 for c in record["components"])
    assert record["validation_rmse"] <= min(c["validation_rmse"] for c in record["components"]) + 1e-9
    tu, ti, tr = data[1]
    blended = np.sqrt(np.mean((np.clip(tables.predict(tu, ti), 0.5, 5) - tr) ** 2))
    alone = [np.sqrt(np.mean((np.clip(f.factors.predict(tu, ti), 0.5, 5) - tr) ** 2)) for f in blend.fits]
    assert blended < max(alone)  # a convex-ish combination: never the worst


def test_flow_steps_give_the_serial_fit_and_the_slice_never_touches_the_test_split(tmp_path, blend):
    """prepare → validation fits → train steps → combine (what the flows run as tasks) on a stored
    split equals ``Blend.fit`` on its TRAIN, and the slice is TRAIN's, disjoint from TEST."""
    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import make_split
    from factorflow.pipeline.blend import combine_runs, prepare, validation_fit
    from factorflow.pipeline.train import train_and_save
    from factorflow.storage.runs import open_run
    from factorflow.storage.scratch import load_run_factors, read_arrays
    from factorflow.storage.splits import read_test, read_train, train_csr

    rng = np.random.default_rng(3)
    users, items = np.nonzero(rng.random((80, 50)) < 0.4)
    src = tmp_path / "r.csv"
    src.write_text("userId,movieId,rating\n" + "".join(
        f"{u},{i},{rng.integers(1, 6)}\n" for u, i in zip(users, items, strict=True)))
    store = str(tmp_path / "store")
    split = make_split(ingest_source(str(src), store, "r"), "random", test_fraction=0.2, seed=1)
    config = BlendConfig(components=COMPONENTS[:2], validation_fraction=0.25, seed=7)
    run = open_run(store, "blend-run")
    plan = prepare(config, split, run)
    v = read_arrays(run.file("blend_validation.npz"))
    pairs = lambda t: set(zip(t.column("user_idx").to_pylist(), t.column("item_idx").to_pylist(), strict=True))  # noqa: E731
    sliced = set(zip(v["users"].tolist(), v["items"].tolist(), strict=True))
    assert plan.n_validation == len(sliced) > 0
    assert sliced <= pairs(read_train(split)) and not sliced & pairs(read_test(split))

    validations = [validation_fit(c, n, config, split, plan) for n, c in enumerate(config.component_configs())]
    runs = [train_and_save(c, split, plan.components[n], (1.0, 5.0))[0]
            for n, c in enumerate(config.component_configs())]
    combined = combine_runs(config, plan, validations, runs, (1.0, 5.0))
    serial = Blend(config).fit(train_csr(split))
    np.testing.assert_allclose(combined.fit["weights"], serial.fit_info()["weights"], atol=1e-9)
    assert combined.fit["intercept"] == pytest.approx(serial.fit_info()["intercept"], abs=1e-9)
    np.testing.assert_allclose(load_run_factors(combined).item_factors, serial.factors().item_factors, atol=1e-6)
    assert combined.kind == "blend" and combined.params == serial.params() and combined.seconds > 0


@pytest.mark.parametrize(("components", "message"), [
    ("als,keras-deep", r"components\[1\]='keras-deep': keras-deep is scored by its network, not by the dot product"),
    ("als,keras-residual", "keras-residual is scored by its network"),
    ("als,bias", r"components\[1\]='bias': a blend's components are factor models, not a baseline"),
    ("als,blend", "not a blend"),
    ("als", "a blend needs at least two components"),
    ('[{"kind": "als", "rank": 0}, "svd"]', r"components\[0\] \(als\): rank=0: must be an integer >= 1"),
])
def test_refused_components_are_one_parameter_error(components, message):
    with pytest.raises(ParameterError, match=message):
        registry.make_config("blend", {"components": components})


def test_cli_refuses_a_network_component_before_the_flow(tmp_path, capsys):
    from factorflow.cli import main

    src = tmp_path / "r.csv"
    src.write_text("userId,movieId,rating\n1,1,4\n")
    assert main(["retrain", str(src), "--store", str(tmp_path / "s"), "--model", "blend",
                 "--components", "als,keras-deep"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("factorflow: error: components[1]='keras-deep': keras-deep is scored by its network")
    assert len(err.splitlines()) == 1 and not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def published(blend, data, tmp_path_factory):
    from factorflow.storage import registry as store_registry

    store = str(tmp_path_factory.mktemp("blend") / "store")
    body = {"kind": "blend", "params": blend.params(), "rating_range": [0.5, 5.0], "fit": blend.fit_info()}
    store_registry.publish(store, "b", blend.factors(), pa.array(np.arange(N_USERS) + 100),
                           pa.array(np.arange(N_ITEMS) + 1), body, seen=data[0])
    return store_registry.load_model(store, "b")


def test_fold_in_on_a_published_blend_is_the_weighted_sum_of_the_components_fold_ins(blend, published):
    from factorflow.serving.foldin import fold_in
    from factorflow.serving.published import recommend_from_ratings

    items, ratings = np.array([3, 17, 40, 41, 90]), np.array([5.0, 1.5, 4.0, 3.5, 2.0])
    w, b = fold_in(published, items, ratings)
    tables = published.factors
    got = tables.item_factors.astype(np.float64) @ w + b + tables.item_bias + tables.global_mean
    info = blend.fit_info()
    want = np.full(N_ITEMS, info["intercept"])
    for a, f, c in zip(info["weights"], blend.fits, blend.component_configs(), strict=True):
        wk, bk = registry.make_model(c).fold_in(f.factors, items, ratings)
        want += a * (f.factors.item_factors.astype(np.float64) @ wk + bk + f.factors.item_bias + f.factors.global_mean)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    served = recommend_from_ratings(published, {4: 5.0, 18: 1.5}, 5, min_ratings=0)
    assert len(served.ranked.item_idx) == 5 and not {3, 17} & set(served.ranked.item_idx.tolist())


def test_fold_in_needs_the_recorded_fit(blend, published):
    from dataclasses import replace

    from factorflow.serving.foldin import fold_in

    stripped = replace(published, model_json={k: v for k, v in published.model_json.items() if k != "fit"})
    with pytest.raises(ParameterError, match=r"--ratings: model b \(kind blend\): model.json: a blend's fit record"):
        fold_in(stripped, np.array([1]), np.array([4.0]))


def test_a_component_that_cannot_fold_in_refuses_in_one_line():
    from factorflow.factors import FactorArrays
    from factorflow.models.blend import _f32_text

    model = Blend(BlendConfig(components="als,u-autorec"))
    bias = _f32_text(np.zeros(6, np.float32))
    model.load_fit({"components": [
        {"kind": "als", "weight": 0.5, "columns": [0, 2], "item_bias": bias, "global_mean": 3.0},
        {"kind": "u-autorec", "weight": 0.5, "columns": [2, 4], "item_bias": bias, "global_mean": 3.0}]})
    f32 = np.float32
    tables = FactorArrays(np.ones((3, 4), f32), np.ones((6, 4), f32), np.zeros(3, f32), np.zeros(6, f32), 3.0)
    with pytest.raises(ParameterError, match="blend fold-in: component u-autorec cannot fold in new ratings"):
        model.fold_in(tables, np.array([1, 2]), np.array([4.0, 2.0]))


def test_similar_is_the_cosine_of_the_weighted_component_geometries(blend, published):
    from factorflow.serving.published import similar

    ranked = similar(published, 5, 4, min_ratings=0)  # raw item 5 = dense 4
    a = blend.fit_info()["weights"]
    inner = sum(w * f.factors.item_factors.astype(np.float64) @ f.factors.item_factors[4].astype(np.float64)
                for w, f in zip(a, blend.fits, strict=True))
    norms = np.sqrt(sum(w * np.einsum("ij,ij->i", f.factors.item_factors.astype(np.float64),
                                      f.factors.item_factors.astype(np.float64)) for w, f in zip(a, blend.fits,
                                                                                               strict=True)))
    cos = inner / (norms * norms[4])
    cos[4] = -np.inf
    assert ranked.item_idx.tolist() == np.argsort(-cos, kind="stable")[:4].tolist()
    np.testing.assert_allclose(ranked.scores, cos[ranked.item_idx], atol=1e-5)


def test_leaderboard_shows_validation_rmse_only_with_a_blend():
    from factorflow.pipeline.leaderboard import build_leaderboard, display_rows

    metrics = {"test": {"rmse": 0.85, "mae": 0.7, "precision@10": 0.1, "recall@10": 0.2, "ndcg@10": 0.3}}
    plain = [{"kind": "als", "status": "evaluated", "metrics": metrics, "seconds": 1.0}]
    assert "val rmse" not in display_rows(build_leaderboard(plain))[0]
    rows = build_leaderboard([*plain, {"kind": "blend", "status": "evaluated", "validation_rmse": 0.8312,
                                       "metrics": {"test": {**metrics["test"], "rmse": 0.84}}, "seconds": 9.0}])
    assert [(r["kind"], r["validation_rmse"]) for r in rows] == [("blend", 0.8312), ("als", None)]
    assert [d["val rmse"] for d in display_rows(rows)] == ["0.8312", None]


def test_compare_set_takes_a_list_value():
    from factorflow.cli.cmd_compare import configs, parse_overrides

    over = parse_overrides(["blend.components=als,svd,blend.ridge=2"], ["als", "blend"])
    assert over == {"blend": {"components": "als,svd", "ridge": 2.0}}
    [blend] = configs(["blend"], over)
    assert [c["kind"] for c in blend.components] == ["als", "svd"] and blend.ridge == 2.0


@pytest.mark.slow
def test_compare_ranks_a_blend_beside_its_components(tmp_path):
    """``compare --models als,svd,blend`` (the blend of those two): one fit of each shared with the
    blend, the blend's row with its validation RMSE, its components' rows with theirs."""
    from cli_env import run_cli

    from factorflow.data.synth import write_synthetic_csv

    src = tmp_path / "ratings.csv"
    write_synthetic_csv(str(src), 300, 200, 12_000, seed=2)
    store = tmp_path / "store"
    proc = run_cli(["compare", str(src), "--store", str(store), "--models", "als,svd,blend", "--json",
                    "--set", "als.rank=8,als.sweeps=4",
                    "--set", 'blend.components=[{"kind": "als", "rank": 8, "sweeps": 4}, "svd"]'],
                   tmp_path / "prefect", timeout=600)
    said = f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr[-6000:]}\n--- stdout ---\n{proc.stdout}"
    assert proc.returncode == 0, said
    rows = {r["kind"]: r for r in json.loads(proc.stdout)["rows"]}
    assert set(rows) == {"als", "svd", "blend"} and all(r["status"] == "evaluated" for r in rows.values()), said
    for r in rows.values():
        assert math.isfinite(r["rmse"]) and math.isfinite(r["validation_rmse"]), r
    assert rows["blend"]["validation_rmse"] < min(rows["als"]["validation_rmse"], rows["svd"]["validation_rmse"])
    assert rows["blend"]["rmse"] < max(rows["als"]["rmse"], rows["svd"]["rmse"])
    [blend_run] = [p for p in (store / "runs").iterdir() if p.name.endswith("-blend")]
    assert not list(blend_run.glob("component-*"))  # both components' full fits were compare's own
    assert {p.name for p in blend_run.iterdir()} >= {"blend_validation.npz", "blend_validation_0.npz",
                                                     "blend_validation_1.npz", "factors.npz", "metrics.json"}
