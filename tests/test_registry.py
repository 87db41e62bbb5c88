"""Publishing: round-trip of the factor tables, CURRENT switching, rollback, crash safety."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from factorflow.errors import NotFoundError, ParameterError
from factorflow.factors import FactorArrays
from factorflow.storage import registry as reg
from factorflow.storage import tables as ft


def make_factors(n_users=7, n_items=11, k=3, seed=0) -> FactorArrays:
    rng = np.random.default_rng(seed)
    return FactorArrays(
        user_factors=rng.normal(size=(n_users, k)).astype(np.float32),
        item_factors=rng.normal(size=(n_items, k)).astype(np.float32),
        user_bias=rng.normal(size=n_users).astype(np.float32),
        item_bias=rng.normal(size=n_items).astype(np.float32),
        global_mean=3.5,
    )


def make_seen(n_users, n_items, seed=1, density=0.3) -> sp.csr_matrix:
    m = sp.random(n_users, n_items, density=density, format="csr", random_state=seed)
    m.data[:] = 4.0
    return m


META = {"kind": "als", "params": {"reg": 0.1, "weighted": True},
        "metrics": {"test": {"rmse": 0.9, "mae": 0.7, "ndcg@10": 0.3}}}


def test_publish_load_round_trip_int_ids(tmp_path):
    f = make_factors()
    seen = make_seen(7, 11)
    users = pa.array(np.arange(7) * 10 + 5, pa.int64())
    items = pa.array(np.arange(11) * 3 + 1, pa.int32())  # any int type is stored as int64
    titles = pa.array([f"Movie {j}" for j in range(11)])
    v = reg.publish(str(tmp_path), "als", f, users, items, META, seen=seen, item_titles=titles)

    m = reg.load_model(str(tmp_path), "als")
    assert m.version == v == reg.current_version(str(tmp_path), "als")
    np.testing.assert_array_equal(m.factors.user_factors, f.user_factors)
    np.testing.assert_array_equal(m.factors.item_factors, f.item_factors)
    np.testing.assert_array_equal(m.factors.user_bias, f.user_bias)
    np.testing.assert_array_equal(m.factors.item_bias, f.item_bias)
    assert m.factors.global_mean == 3.5
    assert m.user_ids.type == pa.int64() and m.user_ids.to_pylist() == users.to_pylist()
    assert m.item_ids.type == pa.int64() and m.item_ids.to_pylist() == items.to_pylist()
    assert m.item_titles.to_pylist() == titles.to_pylist()
    np.testing.assert_array_equal(m.user_n_ratings, np.diff(seen.indptr))
    np.testing.assert_array_equal(m.item_n_ratings, np.bincount(seen.indices, minlength=11))
    assert m.user_index(m.parse_user_id("25")) == 2 and m.user_index(m.parse_user_id("x")) is None
    assert m.user_index(999) is None
    for u in range(7):
        np.testing.assert_array_equal(m.seen_items(u), np.sort(seen[u].indices))
    assert (m.seen_matrix() != (seen != 0)).nnz == 0

    meta = json.loads((tmp_path / "models/als/versions" / v / "model.json").read_text())
    assert meta["metrics"]["test"]["ndcg@10"] == 0.3
    assert (meta["version"], meta["name"], meta["rank"], meta["n_users"], meta["n_items"]) == (
        v, "als", 3, 7, 11)
    assert meta["global_mean"] == 3.5 and meta["created_at"].endswith("Z")
    schema = pq.read_schema(tmp_path / "models/als/versions" / v / "user_factors.parquet")
    assert schema.field("factors").type == pa.list_(pa.float32(), 3)
    assert schema.field("user_idx").type == pa.int32() and schema.field("bias").type == pa.float32()


def test_round_trip_string_ids_without_seen(tmp_path):
    f = make_factors(4, 5, k=2)
    users = pa.array(["u-a", "u-b", "u-c", "u-d"])
    items = pa.array(["i0", "i1", "i2", "i3", "i4"], pa.large_string())
    reg.publish(str(tmp_path), "m", f, users, items, {"kind": "als"},
                extra_tables={"recommendations": pa.table({"user_idx": pa.array([0], pa.int32())})})
    m = reg.load_model(str(tmp_path), "m")
    assert m.user_ids.to_pylist() == users.to_pylist() and m.item_ids.type == pa.string()
    assert m.user_index("u-c") == 2 and m.item_index("i4") == 4 and m.item_index(4) is None
    assert m.item_titles is None and m.user_n_ratings is None
    assert m.seen_items(0).size == 0 and m.seen_matrix() is None
    assert (tmp_path / "models/m/versions" / m.version / "recommendations.parquet").exists()
    np.testing.assert_array_equal(m.factors.item_factors, f.item_factors)


def test_versions_sort_current_switch_and_rollback(tmp_path):
    store = str(tmp_path)
    f = make_factors()
    ids = pa.array(np.arange(7)), pa.array(np.arange(11))
    v1 = reg.publish(store, "als", f, *ids, META)
    v2 = reg.publish(store, "als", make_factors(seed=5), *ids, META)
    v3 = reg.publish(store, "als", make_factors(seed=6), *ids, META, set_current=False)
    assert reg.list_versions(store, "als") == [v1, v2, v3] == sorted([v3, v1, v2])
    assert reg.current_version(store, "als") == v2  # set_current=False did not switch
    reg.set_current(store, "als", v1)
    assert (tmp_path / "models/als/CURRENT").read_text().strip() == v1
    np.testing.assert_array_equal(reg.load_model(store, "als").factors.user_factors, f.user_factors)
    np.testing.assert_array_equal(reg.load_model(store, "als", v3).factors.user_factors,
                                  make_factors(seed=6).user_factors)
    with pytest.raises(NotFoundError, match="not a complete version"):
        reg.set_current(store, "als", "20200101T000000000000Z-abcdef")
    with pytest.raises(NotFoundError, match="not a complete version"):
        reg.set_current(store, "als", "../../etc")
    assert reg.current_version(store, "als") == v1


def test_missing_model_message_lists_names(tmp_path):
    store = str(tmp_path)
    with pytest.raises(NotFoundError, match="no published model 'als'.*no models yet"):
        reg.load_model(store, "als")
    reg.publish(store, "other", make_factors(), pa.array(np.arange(7)), pa.array(np.arange(11)), {})
    with pytest.raises(NotFoundError) as exc:
        reg.current_version(store, "als")
    msg = str(exc.value)
    assert "\n" not in msg and "factorflow retrain" in msg and "other" in msg


def test_crash_before_switch_keeps_previous_version(tmp_path, monkeypatch):
    store = str(tmp_path)
    ids = pa.array(np.arange(7)), pa.array(np.arange(11))
    f1 = make_factors()
    v1 = reg.publish(store, "als", f1, *ids, META, seen=make_seen(7, 11))
    written = []

    def crash(fs, path, obj):  # model.json is written after every parquet file
        written.extend(sorted(os.listdir(os.path.dirname(path))))
        raise OSError("disk full")

    monkeypatch.setattr(reg.fsio, "write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        reg.publish(store, "als", make_factors(seed=9), *ids, META, seen=make_seen(7, 11))
    monkeypatch.undo()
    assert written == ["item_factors.parquet", "seen.parquet", "user_factors.parquet"]
    assert reg.current_version(store, "als") == v1
    assert reg.list_versions(store, "als") == [v1]
    assert os.listdir(tmp_path / "models/als/versions") == [v1]  # no .tmp-* left behind
    np.testing.assert_array_equal(reg.load_model(store, "als").factors.user_factors, f1.user_factors)

    # A crash between the rename and the CURRENT switch: the new version exists, CURRENT is old.
    def crash_switch(*a):
        raise OSError("power cut")

    monkeypatch.setattr(reg, "_switch_current", crash_switch)
    with pytest.raises(OSError, match="power cut"):
        reg.publish(store, "als", make_factors(seed=9), *ids, META)
    monkeypatch.undo()
    assert reg.current_version(store, "als") == v1 and len(reg.list_versions(store, "als")) == 2
    np.testing.assert_array_equal(reg.load_model(store, "als").factors.user_factors, f1.user_factors)


def test_list_versions_ignores_temp_and_incomplete_folders(tmp_path):
    store = str(tmp_path)
    v1 = reg.publish(store, "als", make_factors(), pa.array(np.arange(7)), pa.array(np.arange(11)), {})
    base = tmp_path / "models/als/versions"
    (base / f".tmp-{v1}-0123456789ab").mkdir()  # left by a killed writer
    (base / f".tmp-{v1}-0123456789ab" / "model.json").write_text("{}")
    (base / "20991231T000000000000Z-ffffff").mkdir()  # complete-looking name, no files
    assert reg.list_versions(store, "als") == [v1]
    assert reg.list_models(store) == ["als"]


def test_invalid_inputs_write_nothing(tmp_path):
    store = str(tmp_path)
    f = make_factors()
    ids = pa.array(np.arange(7)), pa.array(np.arange(11))
    with pytest.raises(ParameterError, match=r"model_json.*\['metrics'\]\['test'\]\['rmse'\] is nan"):
        reg.publish(store, "als", f, *ids, {"metrics": {"test": {"rmse": float("nan")}}})
    with pytest.raises(ParameterError, match="model_json.*is a set"):
        reg.publish(store, "als", f, *ids, {"tags": {"a"}})
    with pytest.raises(ParameterError, match="item_ids: length 10"):
        reg.publish(store, "als", f, ids[0], pa.array(np.arange(10)), {})
    with pytest.raises(ParameterError, match="unique"):
        reg.publish(store, "als", f, pa.array([0] * 7), ids[1], {})
    with pytest.raises(ParameterError, match="name="):
        reg.publish(store, "../x", f, *ids, {})
    assert not (tmp_path / "models").exists()
    # numpy scalars are fine and come back as plain JSON numbers
    v = reg.publish(store, "als", f, *ids, {"metrics": {"test": {"rmse": np.float32(0.5)}}})
    assert reg.load_model(store, "als", v).model_json["metrics"]["test"]["rmse"] == 0.5


def test_seen_filtered_read_touches_few_row_groups(tmp_path):
    seen = make_seen(2000, 300, density=0.2, seed=3)  # ~120k pairs
    path = str(tmp_path / "seen.parquet")
    import fsspec

    fs = fsspec.filesystem("file")
    ft.write_seen(fs, path, seen, row_group_size=4096)
    pf = pq.ParquetFile(path)
    assert pf.metadata.num_row_groups > 20
    assert len(ft._groups_for(pf, 1234)) <= 2
    np.testing.assert_array_equal(ft.read_seen_user(fs, path, 1234), np.sort(seen[1234].indices))
    assert ft.read_seen_user(fs, path, 5000).size == 0


def test_publish_to_fsspec_memory_store():
    store = f"memory://ff-test-registry-{uuid.uuid4().hex}"
    f = make_factors()
    v = reg.publish(store, "als", f, pa.array(np.arange(7)), pa.array(np.arange(11)), META,
                    seen=make_seen(7, 11))
    m = reg.load_model(store, "als")
    assert m.version == v and reg.list_versions(store, "als") == [v]
    np.testing.assert_array_equal(m.factors.item_factors, f.item_factors)
    assert m.seen_items(0).dtype == np.int32


def test_cli_models_lists_and_rolls_back(tmp_path, capsys):
    from factorflow.cli import main

    store = str(tmp_path)
    ids = pa.array(np.arange(7)), pa.array(np.arange(11))
    v1 = reg.publish(store, "als", make_factors(), *ids, META)
    v2 = reg.publish(store, "als", make_factors(seed=2), *ids, {"kind": "als"})
    assert main(["models", "--store", store, "als", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["current"], r["test_rmse"]) for r in rows] == [
        (v1, False, 0.9), (v2, True, None)]
    assert main(["models", "--store", store, "als", "--set-current", v1]) == 0
    assert reg.current_version(store, "als") == v1
    capsys.readouterr()
    assert main(["models", "--store", store, "als", "--set-current", "bogus"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["models", "--store", store]) == 0
    assert capsys.readouterr().out.split() == ["als", f"current={v1}", "versions=2"]


def test_rank_zero_model_publishes_and_loads(tmp_path):
    """The bias baselines have no factors: they publish through the same path."""
    f = make_factors(k=0)
    users, items = pa.array(np.arange(7) + 100), pa.array(np.arange(11) + 500)
    version = reg.publish(str(tmp_path), "bias", f, users, items, {"kind": "bias"}, seen=make_seen(7, 11))
    table = pq.read_table(tmp_path / "models" / "bias" / "versions" / version / "item_factors.parquet")
    assert "factors" not in table.column_names
    loaded = reg.load_model(str(tmp_path), "bias")
    assert loaded.factors.user_factors.shape == (7, 0) and loaded.factors.item_factors.shape == (11, 0)
    np.testing.assert_allclose(loaded.factors.predict([0, 6], [3, 10]),
                               f.global_mean + f.user_bias[[0, 6]] + f.item_bias[[3, 10]], rtol=1e-6)
