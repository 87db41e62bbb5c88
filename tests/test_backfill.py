"""Backfills: the cutoff/window maths, the plan's checks, the store round trip, the CLI's checks, and
two runs of the backfill flow on a Prefect test server (the second reuses every cutoff)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from factorflow.errors import ParameterError
from factorflow.pipeline.backfill import (
    COLUMNS,
    advance,
    backfill_id,
    backfill_row,
    cutoff_key,
    exit_code,
    format_instant,
    parse_every,
    parse_instant,
    plan,
    reusable,
    window_counts,
    windows,
    windows_from_request,
)
from factorflow.storage.backfills import (
    read_backfill,
    read_backfill_table,
    read_cutoff_result,
    write_backfill,
    write_cutoff_result,
)


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# --------------------------------------------------------------------------- pure: instants, durations, windows


def test_instants_and_durations():
    assert parse_instant("2015-01-01") == 1_420_070_400 == ts("2015-01-01")
    assert parse_instant("2015-01-01T12:00:00Z") == parse_instant("2015-01-01T14:00:00+02:00") == ts("2015-01-01T12:00")
    assert format_instant(ts("2015-01-01")) == "2015-01-01"
    assert format_instant(ts("2015-01-01T12:00:05")) == "2015-01-01T12:00:05Z"
    assert [parse_every(x) for x in ("30d", "12h", "1w", "365d", "3mo", "1y", "90s", " 5m ")] == [
        (30, "d"), (12, "h"), (1, "w"), (365, "d"), (3, "mo"), (1, "y"), (90, "s"), (5, "m")]
    assert advance(ts("2015-01-31"), (1, "mo")) == ts("2015-02-28")  # clamped to the month's end
    assert advance(ts("2015-01-31"), (1, "mo"), 2) == ts("2015-03-31")  # counted from start: no drift
    assert advance(ts("2016-02-29"), (1, "y")) == ts("2017-02-28")
    assert advance(ts("2015-01-01"), (12, "h"), 3) == ts("2015-01-02T12:00")


def test_windows_start_every_while_before_end():
    days = [(format_instant(c), format_instant(u)) for c, u in windows_from_request("2015-01-01", "2017-01-01", "365d")]
    assert days == [("2015-01-01", "2016-01-01"), ("2016-01-01", "2016-12-31"), ("2016-12-31", "2017-12-31")]
    years = windows_from_request("2015-01-01", "2017-01-01", "1y")  # calendar years: no leap-day extra
    assert [(format_instant(c), format_instant(u)) for c, u in years] == [("2015-01-01", "2016-01-01"),
                                                                           ("2016-01-01", "2017-01-01")]
    assert windows(0, 10, (3, "s")) == [(0, 3), (3, 6), (6, 9), (9, 12)]  # the last window may pass end
    assert windows(0, 9, (3, "s")) == [(0, 3), (3, 6), (6, 9)]
    assert len(windows(0, 100, (1, "s"))) == 100


@pytest.mark.parametrize(("args", "message"), [
    (("2015-01-01", "2015-01-01", "1d"), "--end=2015-01-01: must be after --start=2015-01-01"),
    (("2015-01-01", "2014-06-01", "1d"), "--end=2014-06-01: must be after --start=2015-01-01"),
    (("2015-01-01", "2016-01-01", "0d"), "--every='0d': must be a duration like 30d"),
    (("2015-01-01", "2016-01-01", "1 year"), "--every='1 year': must be a duration like 30d"),
    (("2015-01-01", "2016-01-01", "1d"), "--every=1d: more than 100 cutoffs from 2015-01-01 to 2016-01-01"),
    (("01/02/2015", "2016-01-01", "30d"), "--start='01/02/2015': must be an ISO date or datetime in UTC"),
    (("2015-01-01", "soon", "30d"), "--end='soon': must be an ISO date or datetime in UTC"),
])
def test_bad_requests_name_the_option(args, message):
    with pytest.raises(ParameterError) as info:
        windows_from_request(*args, {"start": "--start", "end": "--end", "every": "--every"})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_window_counts_and_the_plan_against_the_data():
    t = np.array([5, 1, 12, 7, 30, 31, 11, 2, 25])  # any order
    wins = windows(6, 38, (8, "s"))  # [6,14) [14,22) [22,30) [30,38)
    assert window_counts(t, wins) == [(3, 3), (6, 0), (6, 1), (7, 2)]
    manifest = {"has_timestamp": True, "timestamp_min": 1, "timestamp_max": 31}
    entries = plan(t, manifest, wins, dataset="d", snapshot="s", kind="als", params={"rank": 2}, top_n=10)
    assert [e["split"] for e in entries] == ["temporal-cut6-to14", "temporal-cut14-to22", "temporal-cut22-to30",
                                             "temporal-cut30-to38"]
    assert [e["status"] for e in entries] == ["planned", "skipped", "planned", "planned"]
    assert entries[1]["note"].startswith("no ratings in [1970-01-01T00:00:14Z, 1970-01-01T00:00:22Z)")
    assert len({e["key"] for e in entries}) == 4
    with pytest.raises(ParameterError, match=r"^start=1970-01-01T00:00:01Z: the first cutoff must come after"):
        plan(t, manifest, windows(1, 9, (4, "s")), dataset="d", snapshot="s", kind="als", params={}, top_n=10)
    with pytest.raises(ParameterError, match=r"^start=1970-01-01T00:00:32Z: after the last rating"):
        plan(t, manifest, windows(32, 40, (4, "s")), dataset="d", snapshot="s", kind="als", params={}, top_n=10)
    with pytest.raises(ParameterError, match=r"^start: the source has no timestamp column"):
        plan(t, {**manifest, "has_timestamp": False}, wins, dataset="d", snapshot="s", kind="als", params={}, top_n=10)


def test_keys_ids_reuse_and_rows():
    k = cutoff_key("d", "s", "temporal-cut1-to2", "als", {"rank": 2}, 10)
    assert k == cutoff_key("d", "s", "temporal-cut1-to2", "als", {"rank": 2}, 10) and len(k) == 32
    others = [cutoff_key("d", "s2", "temporal-cut1-to2", "als", {"rank": 2}, 10),
              cutoff_key("d", "s", "temporal-cut1-to3", "als", {"rank": 2}, 10),
              cutoff_key("d", "s", "temporal-cut1-to2", "als", {"rank": 3}, 10),
              cutoff_key("d", "s", "temporal-cut1-to2", "als", {"rank": 2}, 5)]
    assert len({k, *others}) == 5
    bid = backfill_id("ml latest", "s", "als", {"rank": 2}, [(1, 2)], 10)
    assert bid.startswith("ml_latest-als-") and bid == backfill_id("ml latest", "s", "als", {"rank": 2}, [(1, 2)], 10)

    record = {"status": "published", "metrics": {"test": {"rmse": 0.9}}, "version": "v1", "model_name": "als"}
    assert reusable(record, False, None, None)
    assert reusable(record, True, "als", ["v0", "v1"])
    assert not reusable(record, True, "als", ["v0"])  # the version is gone: train and publish again
    assert not reusable(record, True, "other", ["v1"])
    assert not reusable({**record, "status": "evaluated", "version": None}, True, "als", ["v1"])
    assert not reusable({"status": "failed"}, False, None, None) and not reusable(None, False, None, None)

    entry = {"cutoff": ts("2015-01-01"), "until": ts("2016-01-01"), "label": "2015-01-01", "n_train": 10,
             "n_test": 5, "note": None}
    row = backfill_row(entry, {"status": "evaluated", "metrics": {"test": {"rmse": 0.9, "mae": float("nan")},
                                                                   "baselines": {"bias": 1.0}}}, reused=True)
    assert tuple(row) == COLUMNS
    assert row["cutoff"] == "2015-01-01" and row["window_end"] == "2016-01-01" and row["rmse"] == 0.9
    assert row["mae"] is None and row["bias_rmse"] == 1.0 and row["reused"] is True and row["version"] is None
    failed = backfill_row(entry, None, status="failed", note="train: boom")
    assert failed["rmse"] is None and failed["note"] == "train: boom"
    assert exit_code([row]) == 0 and exit_code([row, backfill_row(entry, None, status="skipped")]) == 0
    assert exit_code([row, {**row, "status": "rejected"}]) == 3 and exit_code([row, failed]) == 2


def test_store_round_trip(tmp_path):
    store = str(tmp_path / "store")
    key = "ab" * 16
    assert read_cutoff_result(store, key) is None
    path = write_cutoff_result(store, key, {"status": "evaluated", "metrics": {"test": {"rmse": float("nan")}}})
    assert path == str(tmp_path / "store" / "backfills" / "cutoffs" / f"{key}.json")
    got = read_cutoff_result(store, key)
    assert got["key"] == key and got["metrics"]["test"]["rmse"] is None  # strict JSON: NaN → null
    Path(path).write_text("{half")
    assert read_cutoff_result(store, key) is None  # damaged: a miss, never an error
    with pytest.raises(ParameterError, match="^key='../x'"):
        write_cutoff_result(store, "../x", {})

    rows = [{"cutoff": "2015-01-01", "n_train": 10, "rmse": 0.9, "reused": False, "note": None},
            {"cutoff": "2016-01-01", "n_train": 20, "rmse": float("inf"), "reused": True, "note": "x"}]
    paths = write_backfill(store, "d-als-0123", rows, {"kind": "als"}, plot_png=b"\x89PNG fake")
    body = json.loads(Path(paths["json"]).read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert body["rows"][1]["rmse"] is None and body["kind"] == "als"
    assert set(body["files"]) == {"backfill.parquet", "metrics.png"}
    table = read_backfill_table(paths["json"])
    assert [str(t) for t in table.schema.types] == ["string", "int64", "double", "bool", "string"]
    assert table.to_pylist() == body["rows"] == read_backfill(paths["json"])["rows"]


# --------------------------------------------------------------------------- CLI checks (before any flow)


def test_cli_bad_option_is_one_line_exit_2(tmp_path, capsys):
    from factorflow.cli import main

    src = tmp_path / "r.csv"
    src.write_text("userId,movieId,rating,timestamp\n1,1,4,1420070400\n")
    code = main(["backfill", str(src), "--store", str(tmp_path / "store"), "--start", "2015-01-01",
                 "--end", "2016-01-01", "--every", "fortnight"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        "factorflow: error: --every='fortnight': must be a duration like 30d, 12h, 1w, 365d, 3mo or 1y "
        "(a whole number ≥ 1 and one of s, m, h, d, w, mo, y)"]
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------- the flow on a Prefect test server

START, END, EVERY = "2008-01-01", "2011-01-01", "1y"
CUTOFFS = ["2008-01-01", "2009-01-01", "2010-01-01"]


@pytest.fixture(scope="module")
def prefect_server(shared_prefect_api):
    """The session's shared Prefect server (conftest)."""
    yield shared_prefect_api


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory, prefect_server):
    """Two runs of the same 3-cutoff backfill (published as historical versions); the states."""
    from factorflow.config import ComputeOptions, RetrainParams
    from factorflow.data.synth import write_synthetic_csv
    from factorflow.flows.backfill import backfill_flow
    from factorflow.models.registry import make_config

    d = tmp_path_factory.mktemp("backfill")
    src = d / "ratings.csv"
    write_synthetic_csv(str(src), 300, 200, 12_000, seed=1)
    store = str(d / "store")
    config = make_config("als", {"rank": 8, "sweeps": 5})
    params = RetrainParams(compute=ComputeOptions(n_workers=1))
    states = [backfill_flow(str(src), store, START, END, EVERY, config, params, True, None, return_state=True)
              for _ in range(2)]
    return src, Path(store), states


def _pandas_windows(src: Path) -> list[dict]:
    df = pd.read_csv(src)
    out = []
    for c, u in zip(CUTOFFS, [*CUTOFFS[1:], "2011-01-01"], strict=True):
        train = df[df.timestamp < ts(c)]
        test = df[(df.timestamp >= ts(c)) & (df.timestamp < ts(u))]
        mean_rmse = float(np.sqrt(((test.rating - train.rating.mean()) ** 2).mean()))
        out.append({"n_train": len(train), "n_test": len(test), "global_mean_rmse": mean_rmse})
    return out


async def _task_names(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(r.name for r in runs)


async def _artifact(flow_run_id, key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return found


@pytest.mark.slow
def test_three_cutoffs_table_plot_artifact_and_historical_versions(backfilled):
    import asyncio

    from factorflow.storage.registry import list_versions, read_model_json

    src, store, (first, second) = backfilled
    assert first.is_completed(), first.message
    summary = first.result()
    rows = summary["rows"]
    assert [r["cutoff"] for r in rows] == CUTOFFS
    assert [r["window_end"] for r in rows] == [*CUTOFFS[1:], "2011-01-01"]
    expected = _pandas_windows(src)
    assert [r["n_train"] for r in rows] == [e["n_train"] for e in expected]
    assert rows[0]["n_train"] < rows[1]["n_train"] < rows[2]["n_train"]
    assert [r["n_test"] for r in rows] == [e["n_test"] for e in expected]
    for r, e in zip(rows, expected, strict=True):
        assert r["status"] == "published" and r["reused"] is False and r["note"] is None, r
        assert math.isfinite(r["rmse"]) and r["rmse"] < e["global_mean_rmse"], (r, e)
        assert r["global_mean_rmse"] == pytest.approx(e["global_mean_rmse"], abs=1e-9)
        assert 0 < r["mae"] < r["rmse"] and 0 <= r["ndcg@10"] <= 1

    stored = second.result()["rows"]  # the second run (the same backfill) rewrote the table: reused, same values
    assert [{**r, "reused": False} for r in stored] == rows
    body = json.loads(Path(summary["json"]).read_text())
    assert body["rows"] == stored and body["kind"] == "als" and body["params"]["rank"] == 8
    assert pq.read_table(summary["parquet"]).to_pylist() == stored
    png = Path(summary["png"]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert Path(summary["png"]).parent == store / "backfills" / summary["backfill_id"]

    [artifact] = asyncio.run(_artifact(first.state_details.flow_run_id, "backfill"))
    shown = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    assert shown == rows  # the table artifact holds the stored values

    versions = list_versions(str(store), "als")
    assert sorted(versions) == sorted(r["version"] for r in rows)
    for r in rows:
        meta = read_model_json(str(store), "als", r["version"])
        assert meta["status"] == "historical" and meta["cutoff"]["at"] == r["cutoff"]
        assert meta["split"]["id"] == f"temporal-cut{ts(r['cutoff'])}-to{ts(r['window_end'])}"
    assert not (store / "models" / "als" / "CURRENT").exists()  # a backfill never switches CURRENT


@pytest.mark.slow
def test_a_second_run_reuses_every_cutoff_without_training(backfilled):
    import asyncio

    src, store, (first, second) = backfilled
    assert second.is_completed(), second.message
    before, after = first.result(), second.result()
    assert after["reused"] == 3 and all(r["reused"] for r in after["rows"])
    strip = [{k: v for k, v in r.items() if k != "reused"} for r in after["rows"]]
    assert strip == [{k: v for k, v in r.items() if k != "reused"} for r in before["rows"]]
    first_tasks = asyncio.run(_task_names(first.state_details.flow_run_id))
    assert sum(n.startswith("train-") for n in first_tasks) == 3
    names = asyncio.run(_task_names(second.state_details.flow_run_id))
    assert not [n for n in names if n.startswith(("train-", "split-", "publish-", "evaluate-"))], names
    assert after["backfill_id"] == before["backfill_id"] and after["json"] == before["json"]


def test_python_api_checks_before_the_flow(tmp_path):
    import factorflow

    with pytest.raises(ParameterError, match=r"^end=2014-01-01: must be after start=2015-01-01"):
        factorflow.backfill("r.csv", str(tmp_path / "s"), "2015-01-01", "2014-01-01")
    with pytest.raises(ParameterError, match=r"^split: a backfill does not take it"):
        factorflow.backfill("r.csv", str(tmp_path / "s"), "2015-01-01", "2016-01-01", split="random")
    with pytest.raises(ParameterError, match=r"^rank=0: must be an integer >= 1"):
        factorflow.backfill("r.csv", str(tmp_path / "s"), datetime(2015, 1, 1), datetime(2016, 1, 1), rank=0)
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_failing_cutoff_is_a_row_and_only_all_failing_fails_the_run(tmp_path, prefect_server):
    """A damaged split folder (its test.parquet is garbage) fails that cutoff's chain: its row says
    which step and why, the other cutoffs finish, the run completes; with only that cutoff the run
    fails, naming it (the table is still written)."""
    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import split_id
    from factorflow.data.synth import write_synthetic_csv
    from factorflow.flows.backfill import backfill_flow

    src = tmp_path / "ratings.csv"
    write_synthetic_csv(str(src), 300, 200, 12_000, seed=1)
    store = tmp_path / "store"
    snap = ingest_source(str(src), str(store), "ratings")
    damaged = Path(snap.path) / "splits" / split_id("temporal", cutoff=ts("2009-01-01"), until=ts("2010-01-01"))
    damaged.mkdir(parents=True)
    (damaged / "train.parquet").write_bytes(b"not parquet")
    (damaged / "test.parquet").write_bytes(b"not parquet")
    (damaged / "manifest.json").write_text(json.dumps({"split": damaged.name, "kind": "temporal", "n_users": 300,
                                                       "n_items": 200, "n_train": 5, "n_test": 5}))

    state = backfill_flow(str(src), str(store), START, END, EVERY, "bias", return_state=True)
    assert state.is_completed(), state.message
    rows = {r["cutoff"]: r for r in state.result()["rows"]}
    bad = rows.pop("2009-01-01")
    assert bad["status"] == "failed" and bad["rmse"] is None and bad["note"].startswith("train: "), bad
    assert "test.parquet" in bad["note"] and "\n" not in bad["note"]
    assert [r["status"] for r in rows.values()] == ["evaluated", "evaluated"]

    only_bad = backfill_flow(str(src), str(store), "2009-01-01", "2010-01-01", "1y", "bias", return_state=True)
    assert only_bad.is_failed()
    assert "no cutoff finished (1 failed, 0 skipped); cutoff 2009-01-01: train: " in only_bad.message, only_bad.message
    assert len(list((store / "backfills").glob("*/backfill.json"))) == 2  # the failed run's table is written too
