"""``factorflow compare``: the leaderboard rows, their store round trip, the CLI's checks, and
two end-to-end runs of the compare flow through the CLI (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_env import error_lines, run_cli

from factorflow.errors import InputError, NotFoundError
from factorflow.models import registry
from factorflow.pipeline.leaderboard import COLUMNS, build_leaderboard, display_rows, exit_code, failures, sort_rows
from factorflow.storage.leaderboards import (
    latest_leaderboard,
    list_leaderboards,
    read_leaderboard,
    read_leaderboard_table,
    write_leaderboard,
)


def _metrics(rmse: float, mae: float = 0.7) -> dict:
    return {"test": {"rmse": rmse, "mae": mae, "precision@10": 0.1, "recall@10": 0.2, "ndcg@10": 0.3, "n": 100},
            "baselines": {"bias": {"rmse": 0.9}}}


OUTCOMES = [
    {"kind": "bias", "status": "evaluated", "metrics": _metrics(0.90), "seconds": 0.5},
    {"kind": "bpmf", "status": "failed", "metrics": None, "seconds": None, "note": "train: MemoryError"},
    {"kind": "als", "status": "evaluated", "metrics": _metrics(0.85), "seconds": 12.25},
    {"kind": "svd", "status": "evaluated", "metrics": _metrics(float("nan")), "seconds": 1.0},
    {"kind": "pmf", "status": "evaluated", "metrics": _metrics(0.87), "seconds": 3.0},
]


# --------------------------------------------------------------------------- pure leaderboard


def test_rows_have_the_columns_and_sort_by_test_rmse_unevaluated_last():
    rows = build_leaderboard(OUTCOMES)
    assert [r["kind"] for r in rows] == ["als", "pmf", "bias", "bpmf", "svd"]  # no RMSE: last, by kind
    assert all(tuple(r) == COLUMNS for r in rows)
    als = rows[0]
    assert als["rmse"] == 0.85 and als["mae"] == 0.7 and als["ndcg@10"] == 0.3 and als["train_seconds"] == 12.25
    assert als["version"] is None and als["status"] == "evaluated" and als["note"] is None
    failed = rows[3]
    assert failed["rmse"] is None and failed["train_seconds"] is None and failed["note"] == "train: MemoryError"
    assert rows[4]["rmse"] is None  # a NaN RMSE is no RMSE: never "best"
    assert sort_rows(list(reversed(rows))) == rows
    assert [r["kind"] for r in failures(rows)] == ["bpmf"]


def test_version_only_for_published_and_the_exit_code():
    published = {"kind": "als", "status": "published", "metrics": _metrics(0.85), "seconds": 1.0, "version": "v1"}
    rejected = {"kind": "pmf", "status": "rejected", "metrics": _metrics(1.2), "seconds": 1.0, "version": "v2",
                "note": "publish gate: worse than the global mean"}
    failed = {"kind": "svd", "status": "failed", "metrics": None, "note": "evaluate: boom"}
    rows = build_leaderboard([published, rejected])
    assert [(r["kind"], r["version"]) for r in rows] == [("als", "v1"), ("pmf", None)]
    assert exit_code(build_leaderboard([published])) == 0
    assert exit_code(rows) == 3  # only gate rejections: as retrain
    assert exit_code(build_leaderboard([published, rejected, failed])) == 2
    with pytest.raises(ValueError, match="status"):
        build_leaderboard([{**published, "status": "fine"}])


def test_display_rows_round_for_the_table():
    shown = display_rows(build_leaderboard(OUTCOMES))
    assert shown[0] == {"kind": "als", "rmse": "0.8500", "mae": "0.7000", "precision@10": "0.1000",
                        "recall@10": "0.2000", "ndcg@10": "0.3000", "train s": "12.2", "version": None,
                        "status": "evaluated"}
    assert shown[3]["rmse"] is None and shown[3]["train s"] is None


# --------------------------------------------------------------------------- store


def _strict_json(path: str) -> dict:
    def no_constant(name: str):
        raise AssertionError(f"{path}: non-strict JSON constant {name}")

    return json.loads(Path(path).read_text(), parse_constant=no_constant)


def test_store_round_trip(tmp_path):
    store = str(tmp_path / "store")
    rows = build_leaderboard(OUTCOMES)
    info = {"dataset": "ml", "snapshot": "abc", "models": [{"kind": "als", "params": {"rank": 50}}]}
    paths = write_leaderboard(store, "random-f0.2-s42", rows, info, columns=list(COLUMNS), stamp="20260101T000000Z")
    folder = tmp_path / "store" / "leaderboards" / "random-f0.2-s42"
    assert paths["json"] == str(folder / "20260101T000000Z.json")
    assert paths["parquet"] == str(folder / "20260101T000000Z.parquet")
    assert sorted(p.name for p in folder.iterdir()) == ["20260101T000000Z.json", "20260101T000000Z.parquet"]

    body = _strict_json(paths["json"])  # NaN never reaches the file
    assert body["split"] == "random-f0.2-s42" and body["dataset"] == "ml" and body["columns"] == list(COLUMNS)
    assert body["rows"] == rows and body["models"] == info["models"]
    assert set(body["files"]) == {"20260101T000000Z.parquet"}
    assert read_leaderboard(paths["json"]) == body

    table = read_leaderboard_table(paths["json"])
    assert table.column_names == list(COLUMNS)
    assert str(table.schema.field("rmse").type) == "double" and str(table.schema.field("version").type) == "string"
    assert table.to_pylist() == rows

    later = write_leaderboard(store, "random-f0.2-s42", rows[:1], columns=list(COLUMNS))
    assert list_leaderboards(store, "random-f0.2-s42") == [paths["json"], later["json"]]
    assert latest_leaderboard(store) == later["json"]
    with pytest.raises(NotFoundError, match="no leaderboard for split other"):
        latest_leaderboard(store, "other")

    Path(paths["parquet"]).write_bytes(Path(paths["parquet"]).read_bytes()[:-10])  # truncated: named, one line
    with pytest.raises(InputError, match="20260101T000000Z.parquet"):
        read_leaderboard_table(paths["json"])


# --------------------------------------------------------------------------- CLI checks (before any flow)


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "als,nope"], "--models='als,nope': 'nope' is not a model kind; must be comma-separated kinds of "
                               + ", ".join(registry.kinds())),
    (["--models", "als,als"], "--models='als,als': als listed more than once"),
    (["--models", "als", "--set", "bpmf.samples=5"], "--set 'bpmf.samples=5': 'bpmf' is not one of --models (als)"),
    (["--models", "bpmf", "--set", "bpmf.samples=0"], "--set bpmf.samples=0: must be an integer >= 1"),
    (["--models", "bpmf", "--set", "bpmf.samples=many"], "--set bpmf.samples='many': must be an integer"),
    (["--models", "als", "--set", "als.sweeps"], "--set 'als.sweeps': must be KIND.FIELD=VALUE, e.g. bpmf.samples=50"),
])
def test_bad_request_is_one_line_before_the_flow(tmp_path, capsys, args, message):
    from factorflow.cli import main

    src = tmp_path / "r.csv"
    src.write_text("userId,movieId,rating\n1,1,4\n")
    assert main(["compare", str(src), "--store", str(tmp_path / "store"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"factorflow: error: {message}"
    assert not (tmp_path / "store").exists()


def test_set_names_the_unknown_field(tmp_path, capsys):
    from factorflow.cli import main

    src = tmp_path / "r.csv"
    src.write_text("userId,movieId,rating\n1,1,4\n")
    assert main(["compare", str(src), "--store", str(tmp_path / "s"), "--models", "bias", "--set", "bias.rank=3"]) == 2
    assert capsys.readouterr().err.startswith("factorflow: error: --set bias.rank: model bias does not take it")


# --------------------------------------------------------------------------- end to end (CLI → Prefect flow)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from factorflow.data.synth import write_synthetic_csv

    d = tmp_path_factory.mktemp("compare")
    src = d / "ratings.csv"
    write_synthetic_csv(str(src), 400, 300, 20_000, seed=1)
    return d, src


def _leaderboards(store: Path) -> list[Path]:
    return sorted((store / "leaderboards" / "random-f0.2-s42").glob("*.json"))


@pytest.mark.slow
def test_compare_end_to_end_publishes_nothing(synthetic):
    d, src = synthetic
    store = d / "store"
    proc = run_cli(["compare", str(src), "--store", str(store), "--models", "als,bias,global-mean,svd", "--json"],
                   d / "prefect", timeout=600)
    said = f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr[-6000:]}\n--- stdout ---\n{proc.stdout}"
    assert proc.returncode == 0, said
    summary = json.loads(proc.stdout)
    assert summary["split"] == "random-f0.2-s42" and summary["published"] is False
    [js] = _leaderboards(store)
    assert summary["json"] == str(js)
    body = _strict_json(str(js))
    rows = body["rows"]
    assert sorted(r["kind"] for r in rows) == ["als", "bias", "global-mean", "svd"]
    rmse = [r["rmse"] for r in rows]
    assert all(isinstance(x, float) and math.isfinite(x) for x in rmse) and rmse == sorted(rmse)
    assert rows[-1]["kind"] == "global-mean"  # every model beats predicting the mean on planted factors
    assert all(r["status"] == "evaluated" and r["version"] is None and r["note"] is None for r in rows)
    assert all(r["train_seconds"] is not None and r["train_seconds"] >= 0 for r in rows)
    assert rows == summary["rows"]
    assert pq.read_table(js.with_suffix(".parquet")).to_pylist() == rows
    assert not (store / "models").exists()  # nothing published, no CURRENT anywhere
    runs = [p.name for p in (store / "runs").iterdir()]
    assert len(runs) == 4 and all(any(r.endswith("-" + k) for r in runs) for k in ("als", "bias", "svd"))


@pytest.mark.slow
def test_compare_publish_isolates_a_rejected_model(synthetic):
    """--publish: every model that passes the gate is CURRENT under its kind; an uncentred PMF with a
    huge λ (predicts ≈ 0) is rejected, its row says why, the others are untouched; exit 3."""
    d, src = synthetic
    store = d / "store-publish"
    proc = run_cli(["compare", str(src), "--store", str(store), "--models", "als,bias,svd,pmf,bpmf", "--publish",
                    "--set", "pmf.center=false,pmf.reg=1000,pmf.sweeps=2,pmf.rank=5",
                    "--set", "bpmf.samples=4,bpmf.burn_in=1,bpmf.init_sweeps=2"],
                   d / "prefect", timeout=600)
    said = f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr[-6000:]}\n--- stdout ---\n{proc.stdout}"
    assert proc.returncode == 3, said
    assert error_lines(proc.stderr) == [], said
    [js] = _leaderboards(store)
    rows = {r["kind"]: r for r in _strict_json(str(js))["rows"]}
    assert set(rows) == {"als", "bias", "svd", "pmf", "bpmf"}
    pmf = rows.pop("pmf")
    assert pmf["status"] == "rejected" and pmf["version"] is None, pmf
    assert pmf["note"].startswith("publish gate: model pmf was not published: its test RMSE"), pmf
    assert not (store / "models" / "pmf" / "CURRENT").exists()
    for kind, row in rows.items():
        assert row["status"] == "published", row
        assert (store / "models" / kind / "CURRENT").read_text().strip() == row["version"]
    assert "pmf rejected: publish gate: model pmf was not published" in proc.stdout
    lines = proc.stdout.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("kind "))
    printed = [line.split()[0] for line in lines[top + 2: top + 7]]  # header, rule, one line per model
    assert printed[-1] == "pmf" and sorted(printed) == ["als", "bias", "bpmf", "pmf", "svd"], said  # worst last
