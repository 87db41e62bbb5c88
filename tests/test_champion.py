"""Champion/challenger publishing, CURRENT's history (promote, rollback), retention, warm start.

Most tests call the pipeline and registry functions directly on small synthetic data (no Prefect);
one end-to-end test runs ``factorflow retrain`` against a real ``prefect server start``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

from factorflow.config import PublishOptions
from factorflow.errors import ModelRejectedError, NotFoundError, ParameterError
from factorflow.factors import FactorArrays
from factorflow.models.als import ALS, ALSConfig
from factorflow.models.registry import make_config
from factorflow.pipeline import champion as ch
from factorflow.pipeline.evaluate import evaluate_on_split, evaluate_run
from factorflow.pipeline.publish import publish_decided, publish_run
from factorflow.pipeline.train import train_and_save
from factorflow.storage import registry as reg
from factorflow.storage.datasets import read_ids
from factorflow.storage.runs import open_run
from factorflow.storage.splits import read_test, train_csr

RANGE = (0.5, 5.0)
GOOD = {"rank": 8, "reg": 5.0, "sweeps": 6}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Snapshot A (synthetic, learnable) with two random splits; snapshot B: A's users 0..199 only
    plus 40 new users (other raw ids, so dense indices differ from A's)."""
    import pyarrow.csv as pacsv

    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import make_split
    from factorflow.data.synth import write_synthetic_csv

    d = tmp_path_factory.mktemp("champion")
    write_synthetic_csv(str(d / "a.csv"), 300, 150, 12_000, seed=5)
    import pandas as pd

    a = pacsv.read_csv(d / "a.csv").to_pandas()
    ids = np.sort(a.userId.unique())
    extra = a[a.userId.isin(ids[260:])].copy()
    extra["userId"] = extra["userId"] + 100_000  # users champion A never saw
    pd.concat([a[a.userId.isin(ids[:200])], extra]).to_csv(d / "b.csv", index=False)
    snap_a = ingest_source(str(d / "a.csv"), str(d / "store"), "a")
    snap_b = ingest_source(str(d / "b.csv"), str(d / "store"), "b")
    return {"dir": d, "snap_a": snap_a, "snap_b": snap_b,
            "split_a": make_split(snap_a, "random", test_fraction=0.2, seed=42),
            "split_a7": make_split(snap_a, "random", test_fraction=0.2, seed=7),
            "split_b": make_split(snap_b, "random", test_fraction=0.2, seed=42)}


def _run(store: str, snap, split, run_id: str, options: PublishOptions | None = None, name: str = "m",
         raise_rejected: bool = False, **hyper):
    """train → evaluate → publish without Prefect; returns the publish outcome."""
    config = make_config("als", {**GOOD, **hyper})
    run = open_run(store, run_id)
    run, _ = train_and_save(config, split, run, RANGE)
    metrics, _, _ = evaluate_run(run, split, rating_range=RANGE)
    if raise_rejected:
        return publish_run(store, name, run, metrics, snap, split, None, None, None, RANGE, options)
    return publish_decided(store, name, run, metrics, snap, split, None, None, None, RANGE, options)


def _meta(store: str, version: str, name: str = "m") -> dict:
    return reg.read_model_json(store, name, version)


# ---------------------------------------------------------------- the challenge


def test_worse_challenger_is_rejected_better_or_equal_accepted(data, tmp_path):
    store = str(tmp_path / "s")
    snap, split = data["snap_a"], data["split_a"]
    first = _run(store, snap, split, "r1")
    assert first.accepted and "first version" in first.reason
    assert _meta(store, first.version)["challenge"]["decision"] == "accepted"

    with pytest.raises(ModelRejectedError) as exc:  # rank 1, λ huge: about the bias model
        _run(store, snap, split, "r2", rank=1, reg=1e6, raise_rejected=True)
    msg = str(exc.value)
    champ_rmse = _meta(store, first.version)["metrics"]["test"]["rmse"]
    assert "\n" not in msg and f"split {split.split}" in msg and f"{champ_rmse:.4f}" in msg
    assert f"CURRENT still names {first.version}" in msg
    assert reg.current_version(store, "m") == first.version
    [rejected] = [v for v in reg.list_versions(store, "m") if v != first.version]
    meta = _meta(store, rejected)
    assert meta["status"] == "rejected" and "is worse than CURRENT" in meta["rejected_because"][0]
    assert f"{meta['metrics']['test']['rmse']:.4f}" in msg  # both RMSEs are named
    c = meta["challenge"]
    assert c["decision"] == "rejected" and c["champion"]["version"] == first.version
    assert c["champion"]["obtained"] == "recorded" and c["split"] == split.split
    assert c["champion"]["metrics"]["rmse"] == champ_rmse
    assert c["tolerances"] == {"rmse": 0.005, "ndcg@10": 0.02}
    assert meta["metrics"]["test"]["rmse"] > champ_rmse + 0.005

    same = _run(store, snap, split, "r3")  # the same fit again: equal metrics, accepted
    assert same.accepted and reg.current_version(store, "m") == same.version
    assert _meta(store, same.version)["metrics"]["test"]["rmse"] == pytest.approx(champ_rmse, abs=1e-6)
    better = _run(store, snap, split, "r4", sweeps=10)
    assert better.accepted, better.reason
    assert [e["action"] for e in reg.read_history(store, "m")] == ["publish"] * 3


def test_tolerances_and_no_challenge(data, tmp_path):
    store = str(tmp_path / "s")
    snap, split = data["snap_a"], data["split_a"]
    first = _run(store, snap, split, "r1")
    worse = _run(store, snap, split, "r2", options=PublishOptions(rmse_tolerance=10.0, ndcg_tolerance=1.0), rank=1,
                 reg=1e6)
    assert worse.accepted  # within a huge tolerance
    again = _run(store, snap, split, "r3", options=PublishOptions(challenge=False), rank=1, reg=1e6, sweeps=2)
    assert again.accepted and _meta(store, again.version)["challenge"]["reason"] == "no challenge (challenge off)"
    assert reg.current_version(store, "m") == again.version != first.version


def test_decide_guards_ndcg_too():
    opts = PublishOptions(rmse_tolerance=0.005, ndcg_tolerance=0.02)
    ok, why = ch.decide({"rmse": 0.90, "ndcg@10": 0.30}, {"rmse": 0.897, "ndcg@10": 0.31}, opts, "s", "v", "recorded")
    assert ok and "on split s" in why
    ok, why = ch.decide({"rmse": 0.90, "ndcg@10": 0.25}, {"rmse": 0.95, "ndcg@10": 0.30}, opts, "s", "v", "rescored")
    assert not ok and "NDCG@10 0.2500 is below CURRENT's 0.3000" in why and "0.9000" in why
    ok, why = ch.decide({"rmse": 0.906, "ndcg@10": 0.5}, {"rmse": 0.9, "ndcg@10": 0.3}, opts, "s", "v", "rescored")
    assert not ok and "0.9060 is worse than CURRENT v's 0.9000 (rescored)" in why


def test_champion_rescored_on_another_split_equals_direct_evaluation(data, tmp_path):
    """Same snapshot, another split: the rescored metrics are exactly evaluate_on_split of the champion."""
    store = str(tmp_path / "s")
    first = _run(store, data["snap_a"], data["split_a"], "r1")
    champion = reg.load_model(store, "m")
    got, how = ch.champion_metrics(champion, data["snap_a"], data["split_a7"], RANGE)
    direct = evaluate_on_split(champion.factors, data["split_a7"], rating_range=RANGE, baselines=())["test"]
    assert how == "rescored" and got == direct
    recorded, how = ch.champion_metrics(champion, data["snap_a"], data["split_a"], RANGE)
    assert how == "recorded" and recorded == _meta(store, first.version)["metrics"]["test"]


def test_champion_rescored_on_another_snapshot_by_raw_id(data, tmp_path):
    """Snapshot B (dropped users, new users, shifted dense ids): the rescored RMSE is the RMSE of
    the champion's predictions looked up by raw id, unknown users falling back to μ + item bias."""
    store = str(tmp_path / "s")
    _run(store, data["snap_a"], data["split_a"], "r1")
    champion = reg.load_model(store, "m")
    split = data["split_b"]
    got, how = ch.champion_metrics(champion, data["snap_b"], split, RANGE)
    test = read_test(split)
    users = read_ids(data["snap_b"], "user").column("user_id").to_pylist()
    items = read_ids(data["snap_b"], "item").column("item_id").to_pylist()
    f = champion.factors
    pred = []
    for u, i in zip(test.column("user_idx").to_pylist(), test.column("item_idx").to_pylist(), strict=True):
        cu, ci = champion.user_index(users[u]), champion.item_index(items[i])
        p = f.global_mean + (0.0 if cu is None else f.user_bias[cu]) + (0.0 if ci is None else f.item_bias[ci])
        if cu is not None and ci is not None:
            p += float(f.user_factors[cu].astype(np.float64) @ f.item_factors[ci].astype(np.float64))
        pred.append(p)
    err = np.clip(pred, *RANGE) - test.column("rating").to_numpy()
    n_unknown = sum(champion.user_index(users[u]) is None for u in set(test.column("user_idx").to_pylist()))
    assert how == "rescored" and n_unknown > 0
    assert got["rmse"] == pytest.approx(float(np.sqrt(np.mean(err ** 2))), rel=1e-6)  # float32 tables


def test_mapped_scorer_equals_remapped_tables(data, tmp_path):
    """The index-mapping scorer (what a network-served champion is scored through) gives what the
    remapped tables give, pairs and whole rows, over a real Scorer."""
    rng = np.random.default_rng(0)
    f = FactorArrays(rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32),
                     rng.normal(size=6).astype(np.float32), rng.normal(size=5).astype(np.float32), 3.2)
    user_map, item_map = np.array([5, -1, 0, 2, -1, 1, 3]), np.array([-1, 4, 0, 1])
    tables = ch.remap_factors(f, user_map, item_map)
    biases = FactorArrays(np.zeros((7, 0), np.float32), np.zeros((4, 0), np.float32),
                          tables.user_bias, tables.item_bias, f.global_mean)
    mapped = ch.MappedScorer(f, user_map, item_map, biases)
    uu, ii = np.repeat(np.arange(7), 4), np.tile(np.arange(4), 7)
    np.testing.assert_allclose(mapped.score_pairs(uu, ii), tables.score_pairs(uu, ii), rtol=1e-6)
    np.testing.assert_allclose(mapped.score_users(np.arange(7)), tables.score_users(np.arange(7)), rtol=1e-5)
    assert mapped.score_pairs(np.array([1]), np.array([0]))[0] == pytest.approx(3.2)  # both unknown: μ


def test_id_map_by_raw_id():
    known = pa.array([30, 10, 20], pa.int64())
    assert ch.id_map(known, pa.array([10, 40, 30], pa.int32())).tolist() == [1, -1, 0]
    assert ch.id_map(pa.array(["b", "a"]), pa.array(["a", "c"], pa.large_string())).tolist() == [1, -1]
    assert ch.id_map(known, pa.array(["10"])).tolist() == [-1]  # an int id is not a string id


# ---------------------------------------------------------------- history: promote, rollback


def _publish_plain(store: str, seed: int, name: str = "h", **kw) -> str:
    rng = np.random.default_rng(seed)
    f = FactorArrays(rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32),
                     np.zeros(4, np.float32), np.zeros(3, np.float32), 3.0)
    body = {"kind": "als", "metrics": {"test": {"rmse": 0.9}}, **kw.pop("body", {})}
    return reg.publish(store, name, f, pa.array(np.arange(4)), pa.array(np.arange(3)), body, **kw)


def test_promote_and_rollback_round_trip(tmp_path):
    store = str(tmp_path)
    v1, v2, v3 = (_publish_plain(store, s) for s in (1, 2, 3))
    rejected = _publish_plain(store, 4, set_current=False, body={"status": "rejected", "rejected_because": ["worse"]})
    assert reg.current_version(store, "h") == v3
    assert reg.rollback(store, "h") == (v3, v2) and reg.current_version(store, "h") == v2
    assert reg.rollback(store, "h") == (v2, v1)  # a second rollback goes one further back
    with pytest.raises(NotFoundError, match="nothing to roll back to") as exc:
        reg.rollback(store, "h")
    assert "\n" not in str(exc.value)
    assert reg.promote(store, "h", v3, reason="by hand") and reg.current_version(store, "h") == v3
    assert reg.rollback(store, "h") == (v3, v1)  # back to the CURRENT before the promote
    with pytest.raises(ParameterError, match="rejected it.*--force"):
        reg.promote(store, "h", rejected)
    assert reg.promote(store, "h", rejected, force=True)
    assert not reg.promote(store, "h", rejected, force=True)  # already CURRENT: nothing changes
    reg.set_current(store, "h", v2)  # the old form is recorded too
    history = reg.read_history(store, "h")
    assert [(e["version"], e["action"]) for e in history] == [
        (v1, "publish"), (v2, "publish"), (v3, "publish"), (v2, "rollback"), (v1, "rollback"), (v3, "promote"),
        (v1, "rollback"), (rejected, "promote"), (v2, "set-current")]
    assert history[5]["reason"] == "by hand" and history[3]["reason"] == f"rolled back from {v3}"
    assert all(e["at"].endswith("Z") for e in history)
    assert reg.rollback(store, "h") == (v2, rejected)
    assert json.loads((tmp_path / "models/h/history.json").read_text())["entries"] == reg.read_history(store, "h")
    assert not [p for p in os.listdir(tmp_path / "models/h") if p.startswith(".tmp-")]


def test_history_adopts_a_current_it_did_not_record(tmp_path):
    """A store from before the history (or a hand-edited CURRENT): CURRENT is the truth."""
    store = str(tmp_path)
    v1 = _publish_plain(store, 1)
    v2 = _publish_plain(store, 2)
    (tmp_path / "models/h/history.json").unlink()
    (tmp_path / "models/h/CURRENT").write_text(v1 + "\n")
    with pytest.raises(NotFoundError, match="nothing to roll back to"):
        reg.rollback(store, "h")
    reg.promote(store, "h", v2)
    assert [(e["version"], e["action"]) for e in reg.read_history(store, "h")] == [
        (v1, "set-current"), (v2, "promote")]
    assert reg.rollback(store, "h") == (v2, v1)


def test_history_on_an_fsspec_store():
    import uuid

    store = f"memory://ff-test-history-{uuid.uuid4().hex}"
    v1, v2 = _publish_plain(store, 1), _publish_plain(store, 2)
    assert reg.rollback(store, "h") == (v2, v1)
    assert [e["action"] for e in reg.read_history(store, "h")] == ["publish", "publish", "rollback"]
    assert reg.prune_versions(store, "h", 1) == [] and reg.list_versions(store, "h") == [v1, v2]


# ---------------------------------------------------------------- retention


def test_retention_keeps_exactly_k_and_never_current_or_its_predecessor(tmp_path):
    store = str(tmp_path)
    versions = [_publish_plain(store, s) for s in range(6)]
    assert reg.prune_versions(store, "h", 3) == versions[:3]
    assert reg.list_versions(store, "h") == versions[3:]  # exactly K
    assert sorted(os.listdir(tmp_path / "models/h/versions")) == versions[3:]  # no .tmp- left
    # roll back twice: CURRENT is now the oldest kept version, its predecessor already deleted
    reg.rollback(store, "h")
    newer = [_publish_plain(store, s, set_current=False) for s in (10, 11, 12)]
    assert reg.current_version(store, "h") == versions[4]
    assert reg.rollback_target(store, "h") == versions[3]
    deleted = reg.prune_versions(store, "h", 2)
    assert deleted == [versions[5], newer[0]]
    assert reg.list_versions(store, "h") == [versions[3], versions[4], *newer[1:]]  # K newest + CURRENT + predecessor
    with pytest.raises(ParameterError, match="keep=0"):
        reg.prune_versions(store, "h", 0)


def test_retention_after_publish(data, tmp_path):
    store = str(tmp_path / "s")
    opts = PublishOptions(keep_versions=2)
    outs = [_run(store, data["snap_a"], data["split_a"], f"r{i}", options=opts, sweeps=3 + i) for i in range(4)]
    assert all(o.accepted for o in outs), [o.reason for o in outs]
    assert reg.list_versions(store, "m") == [outs[2].version, outs[3].version]
    assert outs[2].pruned == [outs[0].version] and outs[3].pruned == [outs[1].version]


# ---------------------------------------------------------------- warm start


def test_warm_start_maps_factors_by_raw_id(tmp_path):
    """CURRENT's rows land on the new snapshot's dense indices of the same raw ids (shuffled order,
    unknown ids random); the ALS start takes them."""
    from factorflow.data.ingest import ingest_source

    store = str(tmp_path / "s")
    rng = np.random.default_rng(3)
    k = 4
    f = FactorArrays(rng.normal(size=(3, k)).astype(np.float32), rng.normal(size=(4, k)).astype(np.float32),
                     rng.normal(size=3).astype(np.float32), rng.normal(size=4).astype(np.float32), 3.0)
    users, items = pa.array([30, 10, 20]), pa.array([400, 100, 300, 200])  # not sorted: dense order ≠ raw order
    reg.publish(store, "w", f, users, items, {"kind": "als"})
    src = tmp_path / "r.csv"
    src.write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{1 + (u // 10 + i // 100) % 5}.0,1\n" for u in (10, 20, 30, 50) for i in (100, 200, 300, 500)))
    snap = ingest_source(str(src), store, "r")  # dense: users 10,20,30,50; items 100,200,300,500
    model = ALS(ALSConfig(rank=k, sweeps=1))
    info = ch.warm_start_from_current(model, ch.WarmStart(store, "w", snap))
    assert info["users"] == 3 and info["items"] == 3 and info["n_users"] == 4
    w, b, u, c = model.init_sides(4, 4)
    cold_w, _, cold_u, _ = ALS(ALSConfig(rank=k, sweeps=1)).init_sides(4, 4)
    np.testing.assert_array_equal(w[[0, 1, 2]], f.user_factors[[1, 2, 0]])  # raw 10, 20, 30
    np.testing.assert_array_equal(u[[0, 1, 2]], f.item_factors[[1, 3, 2]])  # raw 100, 200, 300
    np.testing.assert_array_equal(c[[0, 1, 2]], f.item_bias[[1, 3, 2]])
    np.testing.assert_array_equal(w[3], cold_w[3]) and np.testing.assert_array_equal(u[3], cold_u[3])
    assert c[3] == 0 and b[3] == 0
    other = ALS(ALSConfig(rank=k + 1))
    assert "rank 4, this fit rank 5" in ch.warm_start_from_current(other, ch.WarmStart(store, "w", snap))["skipped"]
    assert other._initial is None
    import pickle

    assert pickle.loads(pickle.dumps(model))._initial is None  # the Dask tasks do not carry it


def test_warm_start_converges_in_fewer_sweeps(data, tmp_path):
    """Publish ALS on snapshot A, retrain on snapshot B (fewer and new users) warm vs cold: the
    warm fit's objective reaches within 0.5% of the cold fit's final value in fewer sweeps."""
    from factorflow.pipeline.train import train_model

    store = str(tmp_path / "s")
    _run(store, data["snap_a"], data["split_a"], "r1", sweeps=10)
    config = make_config("als", {**GOOD, "sweeps": 10})
    cold = train_model(config, data["split_b"], rating_range=RANGE)
    warm = train_model(config, data["split_b"], rating_range=RANGE,
                       warm_start=ch.WarmStart(store, "m", data["snap_b"]))
    assert warm.fit["warm_start"]["users"] == 200 and "warm_start" not in cold.fit
    final = cold.history[-1]["objective"]

    def sweeps_to(history):
        return next(r["sweep"] for r in history if r["objective"] <= final * 1.005)

    assert sweeps_to(warm.history) < sweeps_to(cold.history)  # 2 vs 5 here
    # (no held-out claim: B's test rows are in A, which CURRENT was fitted on; benchmarks/warm_start.py avoids that)


def test_train_matrix_matches(data):  # guards the fixture: B really is a different id space
    assert train_csr(data["split_b"]).shape[0] == 240 and train_csr(data["split_a"]).shape[0] == 300


# ---------------------------------------------------------------- the CLI (in process: no flow runs)


def test_models_list_marks_each_status_that_is_not_published(tmp_path, capsys):
    """The text listing says REJECTED for a gate/challenge loser and HISTORICAL for a backfill's version."""
    from factorflow.cli import main

    store = str(tmp_path)
    live = _publish_plain(store, 1)
    old = _publish_plain(store, 2, set_current=False, body={"status": "historical", "cutoff": "2015-01-01"})
    lost = _publish_plain(store, 3, set_current=False, body={"status": "rejected", "rejected_because": ["worse"]})
    assert main(["models", "list", "--store", store]) == 0
    lines = {line.split()[-1] if not line.startswith("*") else "CURRENT": line
             for line in capsys.readouterr().out.splitlines()}
    assert live in lines["CURRENT"] and not lines["CURRENT"].endswith(("REJECTED", "HISTORICAL"))
    assert old in lines["HISTORICAL"] and lost in lines["REJECTED"]


def test_cli_models_actions(tmp_path, capsys):
    from factorflow.cli import main

    store = str(tmp_path)
    v1, v2, v3 = (_publish_plain(store, s) for s in (1, 2, 3))
    body = {"status": "rejected", "rejected_because": ["worse"],
            "challenge": {"decision": "rejected", "reason": "worse"}}
    rejected = _publish_plain(store, 4, set_current=False, body=body)

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(["models", *args, "--store", store])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = cli("list", "--json")  # one model: --model may be left out
    assert code == 0 and [(r["version"], r["current"], r["status"]) for r in json.loads(out)] == [
        (v1, False, "published"), (v2, False, "published"), (v3, True, "published"), (rejected, False, "rejected")]
    code, out, _ = cli("show", rejected, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["status"] == "rejected" and shown["rejected_because"] == ["worse"]
    assert shown["challenge"]["decision"] == "rejected" and "user_factors.parquet" in shown["files"]
    code, out, _ = cli("show")
    assert code == 0 and f"version {v3}  (CURRENT)" in out
    assert cli("rollback", "--json")[:2] == (0, json.dumps({"model": "h", "action": "rollback", "from": v3,
                                                            "current": v2}) + "\n")
    code, _, err = cli("promote", rejected, "--model", "h")
    assert code == 2 and err.count("\n") == 1 and "--force" in err
    assert cli("promote", rejected, "--force", "--reason", "try it")[0] == 0
    assert reg.current_version(store, "h") == rejected
    assert cli("rollback")[1] == f"h: CURRENT -> {v2} (rolled back from {rejected})\n"
    code, out, _ = cli("prune", "--keep", "1", "--json")
    assert code == 0 and json.loads(out) == {"model": "h", "deleted": [v3], "kept": [v1, v2, rejected]}
    code, out, _ = cli("history", "--json")
    assert [e["action"] for e in json.loads(out)] == ["publish"] * 3 + ["rollback", "promote", "rollback"]
    # the older forms still work
    assert cli("h", "--set-current", v1)[:2] == (0, f"h: CURRENT -> {v1}\n")
    code, out, _ = cli("h", "--json")
    assert code == 0 and [r["current"] for r in json.loads(out)] == [True, False, False]
    assert cli()[1].split() == ["h", f"current={v1}", "versions=3"]
    # one-line errors
    _publish_plain(store, 9, name="other")
    for args, phrase in ((["rollback"], "--model: the store has 2 models (h, other)"),
                         (["prune"], "prune: give --keep K"),
                         (["frobnicate", "--model", "h"], "not an action"),
                         (["promote", "--model", "h"], "promote: give the VERSION"),
                         (["show", "nope", "--model", "h"], "not a complete version"),
                         (["rollback", "--model", "other"], "nothing to roll back to")):
        code, _, err = cli(*args)
        assert code == 2 and err.count("\n") == 1 and phrase in err, (args, err)
    assert cli("show", v2)[0] == 0  # the version names its model


# ---------------------------------------------------------------- end to end: the CLI against a real Prefect server


async def _failed_run_and_decision(pid: int, flow_name: str = "retrain"):
    """The flow run the CLI process ``pid`` made (the server is shared by the session) and its
    ``publish-decision`` artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )

    async with get_client() as client:
        from factorflow.flows.monitoring import PID_LABEL

        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        [run] = [r for r in runs if str((r.labels or {}).get(PID_LABEL)) == str(pid)]
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["publish-decision"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    return run, artifacts


@pytest.mark.slow
def test_cli_rejects_a_worse_challenger_exit_3_flow_failed_with_artifact(data, tmp_path):
    """CURRENT published from a good ALS fit; ``factorflow retrain --rank 1 --reg 1e6`` (≈ the bias model)
    on the same data: exit 3 with one line naming both RMSEs and the split, CURRENT unchanged, the
    version kept as rejected, and on the Prefect server the flow run Failed with that reason and a
    ``publish-decision`` artifact saying REJECTED."""
    import asyncio
    import shutil

    from cli_env import CLI, error_lines, shared_server
    from prefect_server import use_server

    d = tmp_path
    src = d / "syn.csv"
    shutil.copy(data["dir"] / "a.csv", src)
    store = str(d / "store")
    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import make_split

    snap = ingest_source(str(src), store)  # what the CLI's ingest will find again (same bytes, same options)
    first = _run(store, snap, make_split(snap, "random", test_fraction=0.2, seed=42), "champion", name="syn")
    assert first.accepted
    import subprocess

    server = shared_server()
    with use_server(server):
        child = subprocess.Popen(CLI + ["retrain", str(src), "--store", store, "--name", "syn", "--rank", "1",
                                        "--reg", "1e6", "--sweeps", "2", "--workers", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env(),
                                 stdin=subprocess.DEVNULL)
        out, err = child.communicate(timeout=900)
        proc, proc_pid = subprocess.CompletedProcess(child.args, child.returncode, out, err), child.pid
        said = f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
        assert proc.returncode == 3, said
        [line] = error_lines(proc.stderr)
        champ_rmse = _meta(store, first.version, "syn")["metrics"]["test"]["rmse"]
        [rejected] = [v for v in reg.list_versions(store, "syn") if v != first.version]
        meta = _meta(store, rejected, "syn")
        assert f"{champ_rmse:.4f}" in line and f"{meta['metrics']['test']['rmse']:.4f}" in line, line
        assert "split random-f0.2-s42" in line and f"CURRENT still names {first.version}" in line
        assert reg.current_version(store, "syn") == first.version
        assert meta["status"] == "rejected" and meta["challenge"]["champion"]["obtained"] == "recorded"
        run, artifacts = asyncio.run(_failed_run_and_decision(proc_pid))
    assert run.state.is_failed() and "was not published" in run.state.message, run.state
    assert f"{champ_rmse:.4f}" in run.state.message
    [art] = artifacts
    assert art.type == "markdown" and f"{rejected}: REJECTED" in art.data and first.version in art.data


def test_network_served_champion_rescored_by_raw_id(data, tmp_path):
    """A keras-deep CURRENT (served by its network.keras) rescored on snapshot B: its network scores the
    pairs it knows, μ + known biases the rest; equal to that computed row by row."""
    from factorflow.serving.published import scorer

    store = str(tmp_path / "s")
    config = make_config("keras-deep", {"rank": 8, "hidden": "16", "epochs": 2, "batch_size": 512, "lr": 0.01})
    run, _ = train_and_save(config, data["split_a"], open_run(store, "deep"), RANGE)
    metrics, _, _ = evaluate_run(run, data["split_a"], rating_range=RANGE)
    first = publish_decided(store, "deep", run, metrics, data["snap_a"], data["split_a"], None, None, None, RANGE)
    champion = reg.load_model(store, "deep")
    assert first.accepted and champion.model_json["serving"] == "network"
    got, how = ch.champion_metrics(champion, data["snap_b"], data["split_b"], RANGE)
    test = read_test(data["split_b"])
    users = read_ids(data["snap_b"], "user").column("user_id").to_pylist()
    items = read_ids(data["snap_b"], "item").column("item_id").to_pylist()
    cu = np.array([champion.user_index(users[u]) if champion.user_index(users[u]) is not None else -1
                   for u in test.column("user_idx").to_pylist()])
    ci = np.array([champion.item_index(items[i]) if champion.item_index(items[i]) is not None else -1
                   for i in test.column("item_idx").to_pylist()])
    f = champion.factors
    pred = f.global_mean + np.where(cu >= 0, f.user_bias[cu], 0.0) + np.where(ci >= 0, f.item_bias[ci], 0.0)
    both = (cu >= 0) & (ci >= 0)
    pred[both] = scorer(champion).score_pairs(cu[both], ci[both])
    err = np.clip(pred, *RANGE) - test.column("rating").to_numpy()
    assert how == "rescored" and 0 < both.sum() < len(both)
    assert got["rmse"] == pytest.approx(float(np.sqrt(np.mean(err ** 2))), rel=1e-6)
    assert 0 < got["ndcg@10"] <= 1
