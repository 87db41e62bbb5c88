"""Synthetic generator: shape properties, exact determinism, the recorded noise floor."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from factorflow.cli import main
from factorflow.data.synth import GLOBAL_MEAN, write_synthetic_csv
from factorflow.errors import ParameterError

N_USERS, N_ITEMS, N_RATINGS = 1500, 2000, 180_000


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "s.csv"
    meta = write_synthetic_csv(str(path), N_USERS, N_ITEMS, N_RATINGS, seed=7, rank=5, noise=0.4)
    return path, meta, pd.read_csv(path)


def test_header_and_counts(synth):
    path, meta, df = synth
    assert path.read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    assert len(df) == N_RATINGS == meta["n_ratings_written"]
    assert df.userId.nunique() == N_USERS and df.userId.min() == 1 and df.userId.max() == N_USERS
    assert df.movieId.between(1, N_ITEMS).all()


def test_every_user_has_min_ratings_and_pairs_are_unique(synth):
    _, _, df = synth
    deg = df.groupby("userId").size()
    assert deg.min() >= 20 and deg.max() <= N_ITEMS
    assert not df.duplicated(["userId", "movieId"]).any()


def test_heavy_tails(synth):
    _, _, df = synth
    deg = df.groupby("userId").size()
    assert deg.max() >= 10 * deg.median()
    assert deg.mean() > 1.5 * deg.median()  # right-skewed activity
    pop = df.groupby("movieId").size().sort_values(ascending=False)
    top1 = pop.iloc[: N_ITEMS // 100].sum() / len(df)
    assert top1 > 0.06  # 1% of items hold >6% of ratings (uniform would be 1%)
    assert pop.iloc[: N_ITEMS // 10].sum() / len(df) > 0.3  # top 10% hold >30%
    assert pop.iloc[0] > 10 * pop.median()


def test_half_stars_and_mean(synth):
    _, _, df = synth
    r = df.rating.to_numpy()
    assert set(np.unique(r)) <= {k / 2 for k in range(1, 11)}
    assert r.min() >= 0.5 and r.max() <= 5.0
    assert abs(r.mean() - GLOBAL_MEAN) < 0.15


def test_timestamps_strictly_increase_within_each_user(synth):
    _, meta, df = synth
    d = df.groupby("userId").timestamp.diff().dropna()
    assert (d > 0).all()
    assert df.timestamp.min() == meta["timestamp_min"] and df.timestamp.max() == meta["timestamp_max"]


def test_noise_floor_matches_planted_sigma(synth):
    path, meta, _ = synth
    side = json.loads((path.parent / (path.name + ".json")).read_text())
    assert side == meta
    assert (side["seed"], side["rank"], side["noise_sigma"]) == (7, 5, 0.4)
    # rounding to half stars adds variance 0.25²/3; clipping removes a little
    expected = np.sqrt(0.4**2 + 0.25**2 / 3)
    assert side["noise_floor_rmse"] == pytest.approx(expected, rel=0.05)


def test_noise_floor_zero_noise_is_rounding_only(tmp_path):
    meta = write_synthetic_csv(str(tmp_path / "z.csv"), 100, 300, 5000, seed=1, noise=0.0)
    assert 0.10 < meta["noise_floor_rmse"] < 0.25  # rounding (≈0.144) + clipping of extremes
    assert meta["noise_floor_rmse_vs_clipped_signal"] == pytest.approx(0.25 / np.sqrt(3), rel=0.1)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    args = dict(n_users=300, n_items=400, n_ratings=30_000)
    a, b, c = (tmp_path / n for n in ("a.csv", "b.csv", "c.csv"))
    write_synthetic_csv(str(a), seed=3, **args)
    write_synthetic_csv(str(b), seed=3, **args)
    write_synthetic_csv(str(c), seed=4, **args)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_dense_user_takes_every_item(tmp_path):
    # n_ratings = n_users * n_items: every user rates every item (exercises the Gumbel path)
    path = tmp_path / "d.csv"
    write_synthetic_csv(str(path), 30, 50, 1500, seed=0, min_user_ratings=20)
    df = pd.read_csv(path)
    assert (df.groupby("userId").movieId.nunique() == 50).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_users=10, n_items=10, n_ratings=150), "min_user_ratings"),
        (dict(n_users=10, n_items=30, n_ratings=100), "n_ratings"),
        (dict(n_users=10, n_items=30, n_ratings=301), "n_ratings"),
        (dict(n_users=0, n_items=30, n_ratings=300), "n_users"),
        (dict(n_users=10, n_items=30, n_ratings=300, rank=0), "rank"),
        (dict(n_users=10, n_items=30, n_ratings=300, noise=-1.0), "noise"),
        (dict(n_users=10, n_items=30, n_ratings=300, seed=-2), "seed"),
    ],
)
def test_bad_parameters_name_the_parameter(tmp_path, kwargs, name):
    with pytest.raises(ParameterError, match=rf"^{name}="):
        write_synthetic_csv(str(tmp_path / "x.csv"), **kwargs)
    assert not (tmp_path / "x.csv").exists()


def test_cli_writes_file_and_sidecar(tmp_path, capsys):
    out = tmp_path / "cli.csv"
    rc = main(["synth", "--users", "50", "--items", "80", "--ratings", "2000", "--seed", "2",
               "--rank", "3", "--noise", "0.3", str(out)])  # fmt: skip
    assert rc == 0
    side = json.loads((tmp_path / "cli.csv.json").read_text())
    assert side["n_ratings_written"] == 2000 and side["rank"] == 3 and side["noise_sigma"] == 0.3
    assert len(pd.read_csv(out)) == 2000
    rc = main(["synth", "--users", "50", "--items", "10", "--ratings", "2000", str(out)])
    assert rc == 2
    assert "min_user_ratings=20" in capsys.readouterr().err
