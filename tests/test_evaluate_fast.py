"""pipeline.evaluate.evaluate_on_split equals the plain reference computation (tests/topn_reference.py).

The fast step ranks once for both cut-offs, reads the train ratings off the CSR, scores pairs in a
compiled pass and ranks the baselines by one global order; the reference scores pairs with the
float64 einsum, reads train.parquet again, and ranks every scored row. Same keys, values to 1e-12.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import topn_reference as ref

from factorflow.evaluation.metrics import rating_metrics
from factorflow.models.als import ALSConfig
from factorflow.models.registry import BASELINES, make_model

DATA = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"
RANGE = (0.5, 5.0)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import make_split

    store = str(tmp_path_factory.mktemp("store"))
    return make_split(ingest_source(str(DATA), store, "ml"), "random", test_fraction=0.2, seed=5)


class EinsumScorer:
    """Factor tables scored the reference way: pairs by the float64 einsum, blocks by score_users."""

    def __init__(self, f) -> None:
        self.f = f
        self.n_users, self.n_items = f.n_users, f.n_items

    def score_pairs(self, users, items):
        return ref.predict(self.f, users, items)

    def score_users(self, users):
        return self.f.score_users(users)


def reference_evaluate(f, split, top_n: int) -> dict:
    """evaluate_on_split as it was: evaluate at 10, topn_metrics again at top_n, train re-read."""
    from factorflow.storage.splits import read_test, read_train, train_csr

    train = train_csr(split)
    test = read_test(split)
    cols = {name: test.column(name).to_numpy() for name in test.column_names}
    tr = read_train(split)
    u, i, r = cols["user_idx"], cols["item_idx"], cols["rating"]

    def held_out(fa):
        s = EinsumScorer(fa)
        m = rating_metrics(s, u, i, r, rating_range=RANGE, cold=cols["cold_user"] | cols["cold_item"])
        m.update(ref.topn_metrics(s, train, u, i, r, n=10))
        if top_n != 10:
            m.update(ref.topn_metrics(s, train, u, i, r, n=top_n))
        return m

    return {
        "split": {"id": split.split, "kind": split.manifest.get("kind"), "n_test": len(test)},
        "test": held_out(f),
        "train": rating_metrics(EinsumScorer(f), *(tr.column(c).to_numpy() for c in ("user_idx", "item_idx", "rating")),
                                rating_range=RANGE),
        "baselines": {k: held_out(make_model(k).fit(train).factors()) for k in BASELINES},
    }


def assert_close(got, want, path="metrics"):
    if isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), path
    else:
        assert got == want, path


@pytest.mark.parametrize("top_n", [10, 20])
def test_evaluate_on_split_equals_the_reference(split, top_n):
    from factorflow.pipeline.evaluate import evaluate_on_split
    from factorflow.pipeline.train import train_model

    f = train_model(ALSConfig(rank=6, sweeps=2), split).factors
    got = evaluate_on_split(f, split, rating_range=RANGE, top_n=top_n)
    want = reference_evaluate(f, split, top_n)
    assert_close(got, want)
    assert got["test"]["n_users_evaluated"] > 300 and got["baselines"]["bias"]["ndcg@10"] > 0
    assert np.isfinite(got["train"]["rmse"])
