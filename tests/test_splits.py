"""Splits: exact counts, determinism, temporal / holdout semantics, given, cold-start flags."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factorflow.data.splits import (
    make_split,
    random_mask,
    split_id,
    temporal_mask,
    user_holdout_mask,
    window_masks,
)
from factorflow.errors import InputError, ParameterError
from factorflow.storage.datasets import SnapshotRef
from factorflow.storage.splits import load_split, read_test, read_train, train_csr

ML_SMALL = os.path.join(os.path.dirname(__file__), "data", "ml-latest-small", "ratings.csv")


def _table(u, i, r, t) -> pa.Table:
    return pa.table(
        {
            "user_idx": pa.array(np.asarray(u, dtype=np.int32)),
            "item_idx": pa.array(np.asarray(i, dtype=np.int32)),
            "rating": pa.array(np.asarray(r, dtype=np.float32)),
            "timestamp": pa.array(np.asarray(t, dtype=np.int64)),
        }
    )


def write_snapshot(store, name: str, df: pd.DataFrame, n_users: int, n_items: int,
                   given_test: pd.DataFrame | None = None) -> SnapshotRef:  # fmt: skip
    """A snapshot folder in the documented schema, written directly (no ingest)."""
    snap = "snap0001"
    path = os.path.join(str(store), "datasets", name, snap)
    os.makedirs(path)
    df = df.sort_values(["user_idx", "item_idx"])
    cols = [df[c].to_numpy() for c in ("user_idx", "item_idx", "rating", "timestamp")]
    pq.write_table(_table(*cols), os.path.join(path, "ratings.parquet"))
    pq.write_table(pa.table({"user_idx": pa.array(np.arange(n_users, dtype=np.int32)),
                             "user_id": pa.array(np.arange(n_users) + 1)}),
                   os.path.join(path, "users.parquet"))  # fmt: skip
    pq.write_table(pa.table({"item_idx": pa.array(np.arange(n_items, dtype=np.int32)),
                             "item_id": pa.array(np.arange(n_items) + 1)}),
                   os.path.join(path, "items.parquet"))  # fmt: skip
    manifest = {"snapshot": snap, "n_users": n_users, "n_items": n_items, "rows_kept": len(df)}
    if given_test is not None:
        g = given_test.sort_values(["user_idx", "item_idx"])
        pq.write_table(_table(*[g[c].to_numpy() for c in ("user_idx", "item_idx", "rating", "timestamp")]),
                       os.path.join(path, "given_test.parquet"))  # fmt: skip
        manifest["test_source"] = "given.csv"
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return SnapshotRef(str(store), name, snap, path, manifest)


def random_ratings(n_users=60, n_items=45, seed=0) -> pd.DataFrame:
    """Every user rates 1..30 distinct items; timestamps with deliberate ties."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        d = int(rng.integers(1, 31))
        items = rng.choice(n_items, size=d, replace=False)
        ts = rng.integers(0, 40, size=d) * 1000  # coarse: ties within a user happen
        rows += [(u, i, float(rng.integers(1, 11)) / 2, t) for i, t in zip(items, ts, strict=True)]
    return pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])


@pytest.fixture
def snap(tmp_path):
    return write_snapshot(tmp_path / "store", "toy", random_ratings(), 60, 45)


def _pairs(table: pa.Table) -> set[tuple[int, int]]:
    return set(zip(table.column("user_idx").to_pylist(), table.column("item_idx").to_pylist(), strict=True))


def _df(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


# ------------------------------------------------------------------ pure masks


def test_random_mask_exact_count_and_determinism():
    for n, f in [(10, 0.25), (1001, 0.2), (7, 0.5), (100836, 0.2)]:
        assert random_mask(n, f, 1).sum() == int(np.floor(f * n + 0.5))
    a, b, c = random_mask(500, 0.2, 42), random_mask(500, 0.2, 42), random_mask(500, 0.2, 43)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(np.flatnonzero(a), np.sort(np.random.default_rng(42).permutation(500)[:100]))


def test_temporal_per_user_takes_each_users_latest():
    df = random_ratings()
    u, i, t = (df[c].to_numpy() for c in ("user_idx", "item_idx", "timestamp"))
    mask = temporal_mask(u, i, t, test_fraction=0.3, per_user=True)
    for _user, g in df.assign(test=mask).groupby("user_idx"):
        n = len(g)
        expect = min(int(np.floor(0.3 * n + 0.5)), n - 1)
        assert g.test.sum() == expect
        if n >= 2:
            assert (~g.test).sum() >= 1
        # the test rows are the last by (timestamp, item)
        order = g.sort_values(["timestamp", "item_idx"])
        assert order.test.tolist() == [False] * (n - expect) + [True] * expect


def test_temporal_global_fraction_and_cutoff():
    df = random_ratings()
    u, i, t = (df[c].to_numpy() for c in ("user_idx", "item_idx", "timestamp"))
    mask = temporal_mask(u, i, t, test_fraction=0.2)
    assert mask.sum() == int(np.floor(0.2 * len(df) + 0.5))
    assert t[mask].min() >= t[~mask].max()
    cut = temporal_mask(u, i, t, cutoff=25_000)
    assert np.array_equal(cut, t >= 25_000)


def test_user_holdout_by_time_and_random():
    df = random_ratings()
    u, i, t = (df[c].to_numpy() for c in ("user_idx", "item_idx", "timestamp"))
    for k in (1, 3):
        mask = user_holdout_mask(u, i, t, k, "time")
        for _, g in df.assign(test=mask).groupby("user_idx"):
            n = len(g)
            assert g.test.sum() == (k if n > k else 0)
            order = g.sort_values(["timestamp", "item_idx"])
            if n > k:
                assert order.test.tolist()[-k:] == [True] * k
    r1 = user_holdout_mask(u, i, t, 2, "random", seed=1)
    r2 = user_holdout_mask(u, i, t, 2, "random", seed=1)
    r3 = user_holdout_mask(u, i, t, 2, "random", seed=2)
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)
    deg = df.groupby("user_idx").size()
    assert r1.sum() == int((deg > 2).sum() * 2)


# ------------------------------------------------------------------ written splits


def test_make_split_random_writes_disjoint_parts_and_reuses(snap):
    ref = make_split(snap, "random", test_fraction=0.25, seed=7)
    assert ref.split == "random-f0.25-s7" and not ref.reused
    train, test = read_train(ref), read_test(ref)
    n = snap.manifest["rows_kept"]
    assert test.num_rows == int(np.floor(0.25 * n + 0.5)) and train.num_rows + test.num_rows == n
    assert not (_pairs(train) & _pairs(test))
    assert train.schema.names == ["user_idx", "item_idx", "rating", "timestamp"]
    assert test.schema.names == ["user_idx", "item_idx", "rating", "timestamp", "cold_user", "cold_item"]
    assert str(train.schema.field("user_idx").type) == "int32"
    again = make_split(snap, "random", test_fraction=0.25, seed=7)
    assert again.reused and again.manifest == ref.manifest and again.path == ref.path
    assert load_split(ref.path).manifest == ref.manifest
    same = _pairs(read_test(again))
    other = make_split(snap, "random", test_fraction=0.25, seed=8)
    assert same == _pairs(test) and _pairs(read_test(other)) != same


def test_make_split_random_takes_exactly_the_rows_of_the_pure_mask(snap):
    """The permutation drawn while the snapshot is read selects the rows random_mask selects."""
    ratings = pq.read_table(os.path.join(snap.path, "ratings.parquet"))
    mask = random_mask(ratings.num_rows, 0.3, 11)
    ref = make_split(snap, "random", test_fraction=0.3, seed=11)
    expected = ((read_train(ref), ratings.filter(pa.array(~mask))), (read_test(ref), ratings.filter(pa.array(mask))))
    for got, want in expected:
        assert got.select(ratings.column_names).equals(want)


def test_make_split_random_on_an_unreadable_snapshot_is_one_input_error(snap):
    path = os.path.join(snap.path, "ratings.parquet")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(InputError, match="ratings.parquet: not a readable Parquet file"):
        make_split(snap, "random", test_fraction=0.3, seed=11)


def test_cold_start_flags_and_manifest_counts(tmp_path):
    # user 3 and item 4 appear only after the cutoff → cold in test
    df = pd.DataFrame(
        [(0, 0, 4.0, 1), (0, 1, 3.0, 2), (1, 0, 2.0, 3), (1, 2, 5.0, 10), (2, 1, 1.0, 4),
         (3, 0, 4.5, 11), (3, 1, 3.5, 12), (0, 4, 2.5, 13), (2, 2, 3.0, 14), (1, 3, 3.0, 5)],
        columns=["user_idx", "item_idx", "rating", "timestamp"],
    )  # fmt: skip
    snap = write_snapshot(tmp_path / "s", "cold", df, 5, 6)
    ref = make_split(snap, "temporal", cutoff=10)
    assert ref.split == "temporal-cut10"
    test = _df(read_test(ref)).set_index(["user_idx", "item_idx"])
    assert len(test) == 5
    assert test.cold_user.to_dict() == {(0, 4): False, (1, 2): False, (2, 2): False,
                                         (3, 0): True, (3, 1): True}  # fmt: skip
    assert test.cold_item.to_dict() == {(0, 4): True, (1, 2): True, (2, 2): True,
                                         (3, 0): False, (3, 1): False}  # fmt: skip
    m = ref.manifest
    assert (m["n_train"], m["n_test"]) == (5, 5)
    assert (m["n_test_cold_user"], m["n_test_cold_item"], m["n_test_cold"]) == (2, 3, 5)
    got = (m["n_users"], m["n_items"], m["kind"], m["dataset"], m["snapshot"])
    assert got == (5, 6, "temporal", "cold", "snap0001")
    on_disk = json.load(open(os.path.join(ref.path, "manifest.json")))
    assert on_disk == m


def test_cold_counts_match_recount_on_random_split(snap):
    ref = make_split(snap, "random", test_fraction=0.5, seed=3)
    train, test = _df(read_train(ref)), _df(read_test(ref))
    cu = ~test.user_idx.isin(train.user_idx)
    ci = ~test.item_idx.isin(train.item_idx)
    assert (test.cold_user == cu).all() and (test.cold_item == ci).all()
    assert ref.manifest["n_test_cold_user"] == cu.sum() > 0
    assert ref.manifest["n_test_cold"] == (cu | ci).sum()


def test_temporal_per_user_split_keeps_every_user_in_train(snap):
    ref = make_split(snap, "temporal", test_fraction=0.2, per_user=True)
    assert ref.split == "temporal-user-f0.2" and ref.manifest["seed"] is None
    assert ref.manifest["n_test_cold_user"] == 0
    assert ref.manifest["params"] == {"test_fraction": 0.2, "per_user": True}


def test_user_holdout_split_ids(snap):
    assert make_split(snap, "user-holdout", k=2).split == "userholdout-k2-time"
    r = make_split(snap, "user-holdout", k=1, by="random", seed=5)
    assert r.split == "userholdout-k1-random-s5" and r.manifest["seed"] == 5


def test_given_split_uses_the_snapshots_test_file(tmp_path, snap):
    df = random_ratings(seed=1)
    given = pd.DataFrame([(0, 44, 3.0, 5), (59, 0, 4.0, 6), (1, 1, 2.0, 7)],
                         columns=["user_idx", "item_idx", "rating", "timestamp"])  # fmt: skip
    s2 = write_snapshot(tmp_path / "g", "given", df[df.item_idx != 44], 61, 45, given_test=given)
    ref = make_split(s2, "given")
    assert ref.split == "given"
    assert read_train(ref).num_rows == (df.item_idx != 44).sum()
    test = _df(read_test(ref))
    assert list(zip(test.user_idx, test.item_idx, strict=True)) == [(0, 44), (1, 1), (59, 0)]
    assert test.cold_item.tolist() == [True, False, False]
    with pytest.raises(ParameterError, match="--test-source"):
        make_split(snap, "given")


def test_train_csr_matches_train_rows(snap):
    ref = make_split(snap, "random", test_fraction=0.2, seed=1)
    m = train_csr(ref)
    tr = _df(read_train(ref))
    assert m.shape == (60, 45) and m.nnz == len(tr)
    assert m.dtype == np.float32 and m.indices.dtype == np.int32
    coo = m.tocoo()
    got = sorted(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True))
    assert got == sorted(zip(tr.user_idx.tolist(), tr.item_idx.tolist(), tr.rating.tolist(), strict=True))


@pytest.mark.parametrize(
    "kind, kwargs, name",
    [
        ("nope", {}, "kind"),
        ("random", {"test_fraction": 1.0}, "test_fraction"),
        ("random", {"test_fraction": 0.0}, "test_fraction"),
        ("random", {"seed": -1}, "seed"),
        ("user-holdout", {"k": 0}, "k"),
        ("user-holdout", {"by": "rating"}, "by"),
        ("temporal", {"cutoff": 10, "per_user": True}, "per_user"),
    ],
)
def test_bad_parameters(snap, kind, kwargs, name):
    with pytest.raises(ParameterError, match=rf"^{name}="):
        make_split(snap, kind, **kwargs)
    assert not os.path.exists(os.path.join(snap.path, "splits")) or not [
        d for d in os.listdir(os.path.join(snap.path, "splits")) if not d.startswith(".")
    ]


def test_ml_latest_small_random_split(tmp_path):
    raw = pd.read_csv(ML_SMALL)
    users = np.sort(raw.userId.unique())
    items = np.sort(raw.movieId.unique())
    df = pd.DataFrame({
        "user_idx": np.searchsorted(users, raw.userId), "item_idx": np.searchsorted(items, raw.movieId),
        "rating": raw.rating, "timestamp": raw.timestamp,
    })  # fmt: skip
    snap = write_snapshot(tmp_path / "s", "ml", df, len(users), len(items))
    ref = make_split(snap, "random", test_fraction=0.2, seed=42)
    m = ref.manifest
    assert (m["n_users"], m["n_items"], m["n_train"], m["n_test"]) == (610, 9724, 80669, 20167)
    assert 0 < m["n_test_cold_item"] < 0.05 * m["n_test"] and m["n_test_cold_user"] == 0
    pu = make_split(snap, "temporal", test_fraction=0.2, per_user=True).manifest
    assert pu["n_test_cold_user"] == 0 and 0.19 < pu["n_test"] / len(df) < 0.21


def test_split_of_ingested_snapshot_matches_direct_snapshot(tmp_path):
    from factorflow.data.ingest import ingest_source

    snap = ingest_source(ML_SMALL, str(tmp_path / "store"), "ml")
    ref = make_split(snap, "random", test_fraction=0.2, seed=42)
    assert ref.path.startswith(snap.path) and ref.manifest["snapshot"] == snap.snapshot
    raw = pd.read_csv(ML_SMALL)
    users, items = np.sort(raw.userId.unique()), np.sort(raw.movieId.unique())
    df = pd.DataFrame({
        "user_idx": np.searchsorted(users, raw.userId), "item_idx": np.searchsorted(items, raw.movieId),
        "rating": raw.rating, "timestamp": raw.timestamp,
    })  # fmt: skip
    direct = make_split(write_snapshot(tmp_path / "d", "ml", df, len(users), len(items)), "random")
    assert _pairs(read_test(ref)) == _pairs(read_test(direct))
    keys = ("n_train", "n_test", "n_test_cold_user", "n_test_cold_item", "n_test_cold", "n_users", "n_items")
    assert {k: ref.manifest[k] for k in keys} == {k: direct.manifest[k] for k in keys}


def test_fast_sorted_path_equals_general_path():
    df = random_ratings(seed=4)
    srt = df.sort_values(["user_idx", "item_idx"]).reset_index(drop=True)
    shuf = srt.sample(frac=1.0, random_state=0).reset_index(drop=True)

    def test_pairs(d, fn):
        u, i, t = (d[c].to_numpy() for c in ("user_idx", "item_idx", "timestamp"))
        m = fn(u, i, t)
        return set(zip(u[m].tolist(), i[m].tolist(), strict=True))

    for fn in (
        lambda u, i, t: temporal_mask(u, i, t, test_fraction=0.3, per_user=True),
        lambda u, i, t: temporal_mask(u, i, t, test_fraction=0.3),
        lambda u, i, t: user_holdout_mask(u, i, t, 2, "time"),
    ):
        a, b = test_pairs(srt, fn), test_pairs(shuf, fn)
        assert a == b and len(a) > 0


@pytest.mark.parametrize("kwargs,part", [
    ({"kind": "temporal", "cutoff": 10**12}, "test"),
    ({"kind": "temporal", "cutoff": 0}, "train"),
    ({"kind": "user-holdout", "k": 100_000}, "test"),
])
def test_empty_split_part_is_a_one_line_error(ml_snapshot_for_empty, kwargs, part):
    from factorflow.data.splits import make_split
    from factorflow.errors import ParameterError

    kind = kwargs.pop("kind")
    with pytest.raises(ParameterError, match=f"its {part} part would be empty"):
        make_split(ml_snapshot_for_empty, kind, **kwargs)


def test_split_ids_distinguish_close_fractions():
    from factorflow.data.splits import split_id

    assert split_id("random", test_fraction=0.1, seed=1) != split_id("random", test_fraction=0.1000001, seed=1)
    assert split_id("random", test_fraction=0.2, seed=42) == "random-f0.2-s42"


@pytest.fixture(scope="module")
def ml_snapshot_for_empty(tmp_path_factory):
    from factorflow.data.ingest import ingest_source

    return ingest_source(str(ML_RATINGS_FOR_EMPTY), str(tmp_path_factory.mktemp("store")), "ml")


ML_RATINGS_FOR_EMPTY = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"


# ------------------------------------------------------------------ bounded temporal windows (backfills)


def test_window_masks_train_before_test_inside_rest_in_neither():
    t = np.array([5, 10, 19, 20, 21, 29, 30, 31, 0, 30])
    train, test = window_masks(t, 20, 30)
    assert train.tolist() == [True, True, True, False, False, False, False, False, True, False]
    assert test.tolist() == [False, False, False, True, True, True, False, False, False, False]
    assert not (train & test).any() and (~train & ~test).sum() == 3  # 30, 31, 30: after the window
    with pytest.raises(ParameterError, match=r"^until=20: must be after cutoff=20"):
        window_masks(t, 20, 20)


def test_window_split_ids_and_their_checks():
    assert split_id("temporal", cutoff=1000) == "temporal-cut1000"
    assert split_id("temporal", cutoff=1000, until=2000) == "temporal-cut1000-to2000"
    assert split_id("temporal", cutoff=np.int64(7), until=np.int64(9)) == "temporal-cut7-to9"
    with pytest.raises(ParameterError, match=r"^until=1000: must be after cutoff=1000"):
        split_id("temporal", cutoff=1000, until=1000)
    with pytest.raises(ParameterError, match=r"^until=5: bounds a temporal split's test window"):
        split_id("random", until=5)
    with pytest.raises(ParameterError, match=r"^until=5: bounds a temporal split's test window"):
        split_id("temporal", test_fraction=0.2, until=5)
    with pytest.raises(ParameterError, match=r"^until=2.5: must be an integer timestamp"):
        split_id("temporal", cutoff=1, until=2.5)


def test_make_window_split_leaves_the_rows_after_the_window_out(snap):
    df = random_ratings()
    ref = make_split(snap, "temporal", cutoff=15_000, until=25_000)
    assert ref.split == "temporal-cut15000-to25000" and not ref.reused
    train, test = _df(read_train(ref)), _df(read_test(ref))
    assert len(train) == (df.timestamp < 15_000).sum() and (train.timestamp < 15_000).all()
    assert len(test) == ((df.timestamp >= 15_000) & (df.timestamp < 25_000)).sum()
    assert test.timestamp.between(15_000, 24_999).all()
    m = ref.manifest
    assert m["params"] == {"cutoff": 15_000, "until": 25_000} and m["kind"] == "temporal"
    assert m["n_excluded"] == (df.timestamp >= 25_000).sum() == len(df) - len(train) - len(test)
    assert m["n_test_cold_user"] == (~test.user_idx.isin(train.user_idx)).sum()
    assert make_split(snap, "temporal", cutoff=15_000, until=25_000).reused  # same request, same folder
    unbounded = make_split(snap, "temporal", cutoff=15_000)
    assert "n_excluded" not in unbounded.manifest and unbounded.manifest["n_train"] == len(train)
