"""The real ml-latest-small ratings.csv: counts, ranges and an exact round-trip against pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from factorflow.data.ingest import ingest_source
from factorflow.storage.datasets import read_ids, read_ratings, read_rejects

RATINGS = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"


def test_ml_latest_small_round_trip(tmp_path):
    ref = ingest_source(str(RATINGS), str(tmp_path / "store"))
    m = ref.manifest
    assert (m["rows_read"], m["rows_kept"], m["rows_rejected"], m["rows_duplicate"]) == (100_836, 100_836, 0, 0)
    assert (m["n_users"], m["n_items"]) == (610, 9_724)
    assert (m["rating_min"], m["rating_max"]) == (0.5, 5.0)
    assert m["rating_range"] == [0.5, 5.0] and m["rating_range_declared"] is False
    assert m["rating_range_inferred_from"] == {"rule": "common scale", "bulk": [0.5, 5.0], "set_aside_each_side": 101,
                                               "n_ratings": 100_836}
    assert m["rating_values"] == [0.5 * k for k in range(1, 11)]
    assert read_rejects(ref).num_rows == 0 and m["read_path"] == "fast"

    expected = pd.read_csv(RATINGS).sort_values(["userId", "movieId"]).reset_index(drop=True)
    ratings = read_ratings(ref).to_pandas()
    users = read_ids(ref, "user").to_pandas()
    items = read_ids(ref, "item").to_pandas()
    assert users["user_idx"].tolist() == list(range(610)) and users["user_id"].is_monotonic_increasing
    assert items["item_idx"].tolist() == list(range(9_724)) and items["item_id"].is_monotonic_increasing
    assert sorted(users["user_id"]) == sorted(expected["userId"].unique())
    assert sorted(items["item_id"]) == sorted(expected["movieId"].unique())
    np.testing.assert_array_equal(users["user_id"].to_numpy()[ratings["user_idx"]], expected["userId"])
    np.testing.assert_array_equal(items["item_id"].to_numpy()[ratings["item_idx"]], expected["movieId"])
    np.testing.assert_array_equal(ratings["rating"], expected["rating"].astype(np.float32))
    np.testing.assert_array_equal(ratings["timestamp"], expected["timestamp"])


def test_synthetic_half_stars_keep_every_row(tmp_path):
    from factorflow.data.synth import write_synthetic_csv

    src = str(tmp_path / "synthetic.csv")
    write_synthetic_csv(src, n_users=300, n_items=200, n_ratings=20_000, seed=3)
    m = ingest_source(src, str(tmp_path / "store")).manifest
    assert (m["rows_kept"], m["rows_rejected"], m["rating_range"]) == (20_000, 0, [0.5, 5.0])
