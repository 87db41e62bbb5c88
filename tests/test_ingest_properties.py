"""Property-based tests of the parser: random tables with injected bad rows round-trip exactly."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from factorflow.data.ingest import ingest_source
from factorflow.data.ingest.ids import IdMap
from factorflow.storage.datasets import read_ids, read_ratings, read_rejects

ids = st.one_of(
    st.integers(0, 30).map(str),  # canonical integers
    st.sampled_from(["007", "u1", "u2", "x", "-4", "00"]),  # strings (some look numeric)
)
good_row = st.tuples(ids, ids, st.integers(1, 10).map(lambda k: k / 2), st.integers(0, 5))
bad_row = st.sampled_from(
    [
        ("{u},{i}", "wrong column count"),
        ("{u},{i},{r},{t},9", "wrong column count"),
        ("{u},{i},abc,{t}", "non-numeric rating"),
        ("{u},{i},NaN,{t}", "non-finite rating"),
        ("{u},{i},-inf,{t}", "non-finite rating"),
        (",{i},{r},{t}", "missing field"),
        ("{u},{i},,{t}", "missing field"),
        ("{u},{i},{r},12:30", "unparsable timestamp"),
        ("", None),  # a blank line: skipped, not a row
    ]
)
line = st.one_of(good_row.map(lambda g: ("good", g)), st.tuples(bad_row, good_row).map(lambda b: ("bad", b)))


def _canonical(s: str) -> bool:
    try:
        return str(int(s)) == s
    except ValueError:
        return False


@settings(max_examples=60, deadline=None)
@given(first=good_row, rest=st.lists(line, max_size=40))
def test_random_tables_round_trip(first, rest):
    text = ["userId,movieId,rating,timestamp"]
    expected_rejects, best, order = [], {}, 0
    for kind, payload in [("good", first)] + rest:
        lineno = len(text) + 1
        if kind == "good":
            u, i, r, t = payload
            text.append(f"{u},{i},{r},{t}")
            key = (u, i)
            if key not in best or t >= best[key][1]:
                best[key] = (r, t, order)
            order += 1
        else:
            (template, reason), (u, i, r, t) = payload
            text.append(template.format(u=u, i=i, r=r, t=t))
            if reason is not None:
                expected_rejects.append((lineno, reason))
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "r.csv")
        with open(src, "w") as f:
            f.write("\n".join(text) + "\n")
        # the parser is under test: declare the scale (inferring one from a handful of random
        # ratings may rightly set an extreme value aside; test_ingest.py tests inference)
        ref = ingest_source(src, os.path.join(d, "s"), max_reject_fraction=1.0, rating_range=(0.5, 5.0))
        rej = read_rejects(ref)
        ratings = read_ratings(ref)
        users = read_ids(ref, "user").column("user_id")
        items = read_ids(ref, "item").column("item_id")

    assert list(zip(rej.column("line").to_pylist(), rej.column("reason").to_pylist(), strict=True)) == expected_rejects
    got = {
        (str(users[u].as_py()), str(items[i].as_py())): (r, t)
        for u, i, r, t in zip(*(ratings.column(c).to_pylist() for c in ("user_idx", "item_idx", "rating", "timestamp")),
                              strict=True)
    }
    assert got == {k: (r, t) for k, (r, t, _) in best.items()}
    assert ratings.num_rows == len(best) == ref.manifest["rows_kept"]
    assert ref.manifest["rows_rejected"] == len(expected_rejects)
    keys = list(zip(ratings.column("user_idx").to_pylist(), ratings.column("item_idx").to_pylist(), strict=True))
    assert keys == sorted(set(keys))  # sorted by (user, item), one row per pair
    for side, col in ((0, users), (1, items)):
        raw = {k[side] for k in best}
        assert col.type == (pa.int64() if all(_canonical(s) for s in raw) else pa.string())
        assert sorted(str(x) for x in col.to_pylist()) == sorted(raw)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.text("0123456789ab-", min_size=1, max_size=4), max_size=30), max_size=5))
def test_id_map_is_a_bijection_in_sorted_order(batches):
    m = IdMap()
    provisional = [m.encode(pa.array(b, pa.string())) for b in batches]
    remap, final_ids = m.finalize()
    values = final_ids.to_pylist()
    assert sorted(set(map(str, values))) == sorted({s for b in batches for s in b}) or not batches
    assert len(set(values)) == len(values) == m.n
    assert values == sorted(values)
    for b, p in zip(batches, provisional, strict=True):
        assert [str(values[k]) for k in remap[p]] == b
    assert np.array_equal(np.sort(remap), np.arange(m.n))
