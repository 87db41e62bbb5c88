"""Ingest's fast paths against their plain references: line blocks, parallel parsing, the packed sort,
duplicate resolution, scale inference from counts, and the ratings Parquet layout."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factorflow.data.ingest import infer_scale, ingest_source, ordering, planned_snapshot, reader, snapshot
from factorflow.data.ingest.blocks import line_blocks
from factorflow.data.ingest.formats import detect_format, read_sample
from factorflow.data.ingest.ids import IdMap
from factorflow.data.ingest.ordering import SortedRows, keep_latest, pair_keys, resolve_duplicates, sort_pairs
from factorflow.data.ingest.scale import infer_scale_from_counts, value_counts
from factorflow.errors import InputError
from factorflow.storage.datasets import list_snapshots, read_ratings


def _blocks(data: bytes, block_size: int, skip: int) -> list[bytes]:
    return [b.to_pybytes() for b in line_blocks(pa.BufferReader(data), block_size, skip)]


@settings(max_examples=80, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab,1", max_size=12), max_size=30),
    ends=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=30, max_size=30),
    block_size=st.integers(1, 40),
    skip=st.integers(0, 3),
    bom=st.booleans(),
    last_end=st.booleans(),
)
def test_line_blocks_cut_at_line_ends_and_lose_nothing(lines, ends, block_size, skip, bom, last_end):
    parts = [line + end for line, end in zip(lines, ends, strict=False)]
    if parts and not last_end:
        parts[-1] = lines[len(parts) - 1]
    text = "".join(parts).encode()
    data = (b"\xef\xbb\xbf" if bom else b"") + text
    blocks = _blocks(data, block_size, skip)
    # the reference: drop the BOM and `skip` line ends (\r\n, \r or \n) when skipping, else keep everything
    if skip:
        rest = text
        for _ in range(skip):
            cut = [k for k in (rest.find(b"\r\n"), rest.find(b"\r"), rest.find(b"\n")) if k >= 0]
            if not cut:
                rest = b""
                break
            k = min(cut)
            rest = rest[k + (2 if rest[k : k + 2] == b"\r\n" else 1) :]
        want = rest
    else:
        want = data
    assert b"".join(blocks) == want
    assert all(blocks)  # no empty block
    assert all(b[-1:] in (b"\n", b"\r") for b in blocks[:-1])


def _csv(n: int, seed: int, header: str = "userId,movieId,rating,timestamp", end: str = "\n") -> str:
    rng = np.random.default_rng(seed)
    rows = [f"{u},{i},{r},{t}" for u, i, r, t in zip(rng.integers(0, 400, n), rng.integers(0, 90, n),
                                                    rng.integers(1, 11, n) / 2, rng.integers(0, 99, n), strict=True)]
    return end.join([header] + rows) + end


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("block_size", [64, 1000, 1 << 20])
def test_parallel_fast_path_equals_the_robust_path(tmp_path, end, block_size):
    """Rows, their order and the provisional ids are those of the serial robust pass, at any block size."""
    src = str(tmp_path / "r.csv")
    with open(src, "w", newline="") as f:
        f.write("\n\n" + _csv(3000, 1, end=end))  # blank lines before the header too
    spec = detect_format(src, read_sample(src))
    out = {}
    for robust in (False, True):
        users, items = IdMap(), IdMap()
        rows = reader._read(src, spec, users, items, None, None, None, block_size, robust=robust)
        assert rows.path == ("robust" if robust else "fast") and rows.rows_read == 3000
        out[robust] = [users.added_since(0), items.added_since(0)] + [
            rows.column(c) for c in ("user", "item", "rating", "timestamp")]
    for a, b in zip(out[False], out[True], strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_bad_row_in_a_late_block_sends_the_file_to_the_robust_path(tmp_path):
    text = _csv(5000, 2)
    lines = text.splitlines()
    lines[4500] = "7,7,abc,7"
    src = str(tmp_path / "r.csv")
    with open(src, "w") as f:
        f.write("\n".join(lines) + "\n")
    ref = ingest_source(src, str(tmp_path / "s"), rating_range=(0.5, 5))
    m = ref.manifest
    assert (m["read_path"], m["rows_read"], m["rows_rejected"]) == ("robust", 5000, 1)


def _reference_order(u: np.ndarray, i: np.ndarray, n_items: int) -> np.ndarray:
    return np.lexsort((np.arange(len(u)), i, u))


@pytest.mark.parametrize("n_items", [7, 2**40])  # the packed sort, and the argsort fallback (key too wide)
def test_sort_pairs_is_the_stable_order(n_items):
    rng = np.random.default_rng(5)
    u = rng.integers(0, 50, 20_000).astype(np.int64)
    i = rng.integers(0, 7, 20_000).astype(np.int64)
    order, keys = sort_pairs(pair_keys(u, i, n_items))
    want = _reference_order(u, i, n_items)
    assert np.array_equal(order, want)
    assert np.array_equal(keys, u[want] * n_items + i[want])


def test_sort_pairs_of_sorted_keys_is_the_identity():
    key = np.repeat(np.arange(100, dtype=np.int64), 3)
    order, keys = sort_pairs(key.copy())
    assert np.array_equal(order, np.arange(300)) and np.array_equal(keys, key)


def test_resolve_duplicates_matches_a_plain_loop_at_scale():
    rng = np.random.default_rng(8)
    n = 50_000
    u, i = rng.integers(0, 300, n).astype(np.int32), rng.integers(0, 40, n).astype(np.int32)
    t = rng.integers(0, 5, n)
    best: dict[tuple[int, int], int] = {}
    for k in range(n):
        key = (int(u[k]), int(i[k]))
        if key not in best or t[k] >= t[best[key]]:
            best[key] = k
    assert resolve_duplicates(u, i, t, 40).tolist() == [best[key] for key in sorted(best)]


def test_sorted_rows_batches_rebuild_the_sorted_table():
    rng = np.random.default_rng(9)
    n, n_items = 10_000, 33
    u, i = rng.integers(0, 200, n).astype(np.int32), rng.integers(0, n_items, n).astype(np.int32)
    r, t = (rng.integers(1, 11, n) / 2).astype(np.float32), rng.integers(0, 10, n)
    rows, n_dup = SortedRows.build(pair_keys(u, i, n_items), r, t, n_items)
    sel = resolve_duplicates(u, i, t, n_items)
    assert n_dup == n - len(sel)
    got = pa.Table.from_batches(list(rows.batches(999)))
    assert got.column("user_idx").to_numpy().tolist() == u[sel].tolist()
    assert got.column("item_idx").to_numpy().tolist() == i[sel].tolist()
    assert got.column("rating").to_numpy().tolist() == r[sel].tolist()
    assert got.column("timestamp").to_numpy().tolist() == t[sel].tolist()
    kept = np.concatenate(list(rows.kept_parts("rating")))
    assert sorted(kept.tolist()) == sorted(r[sel].tolist())
    order, keys = keep_latest(*sort_pairs(pair_keys(u, i, n_items)), t)
    assert order.tolist() == sel.tolist()


rating_sets = st.lists(st.sampled_from([0.5, 1.0, 2.5, 3.0, 4.5, 5.0, 0.0, 7.0, 10.0, -3.0, 1e6, 99.0]),
                       min_size=1, max_size=3000)


@settings(max_examples=150, deadline=None)
@given(values=rating_sets, n_parts=st.integers(1, 5))
def test_scale_from_counts_equals_scale_from_ratings(values, n_parts):
    r = np.asarray(values, np.float32)
    counted = value_counts(np.array_split(r, n_parts))
    assert counted is not None and counted.n == len(r)
    assert infer_scale_from_counts(counted) == infer_scale(r)


def test_value_counts_gives_up_beyond_its_limit():
    r = np.arange(100, dtype=np.float32)
    assert value_counts([r], max_distinct=99) is None
    assert value_counts([r[:50], r[50:]], max_distinct=60) is None
    vc = value_counts([r[:50], r[40:]], max_distinct=100)
    assert vc is not None and vc.values.tolist() == r.tolist() and vc.counts.sum() == 110


def test_ratings_parquet_is_sorted_delta_encoded_and_reads_back(tmp_path):
    src = str(tmp_path / "r.csv")
    with open(src, "w") as f:
        f.write(_csv(4000, 3))
    ref = ingest_source(src, str(tmp_path / "s"))
    pf = pq.ParquetFile(os.path.join(ref.path, "ratings.parquet"))
    rg = pf.metadata.row_group(0)
    assert [(c.column_index, c.descending) for c in rg.sorting_columns] == [(0, False), (1, False)]
    encodings = {rg.column(j).path_in_schema: rg.column(j).encodings for j in range(rg.num_columns)}
    assert "DELTA_BINARY_PACKED" in encodings["item_idx"] and "DELTA_BINARY_PACKED" in encodings["timestamp"]
    t = read_ratings(ref)
    assert t.schema.types == [pa.int32(), pa.int32(), pa.float32(), pa.int64()]
    key = t.column("user_idx").to_numpy().astype(np.int64) * 1000 + t.column("item_idx").to_numpy()
    assert (np.diff(key) > 0).all() and t.num_rows == ref.manifest["rows_kept"]


def test_a_clean_ingest_does_not_import_pandas(tmp_path):
    """pyarrow's pandas probe (pa.array, pa.scalar, to_numpy) costs a short ingest ~0.2 s and 40 MB."""
    src = str(tmp_path / "r.csv")
    with open(src, "w") as f:
        f.write(_csv(2000, 4))
    code = ("import sys; from factorflow.data.ingest import ingest_source; "
            f"ingest_source({src!r}, {str(tmp_path / 's')!r}); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("with_test_file", [False, True])
def test_hashing_beside_the_sort_gives_the_planned_snapshot(tmp_path, with_test_file, monkeypatch):
    """A first ingest hashes on a helper thread after parsing (beside the sort); the snapshot and the hashes
    are those that hashing first gives (planned_snapshot), and a failed parse stops the helper."""
    src, test = str(tmp_path / "r.csv"), str(tmp_path / "t.csv")
    with open(src, "w") as f:
        f.write(_csv(3000, 6))
    with open(test, "w") as f:
        f.write(_csv(300, 7))
    kw = {"test_source": test} if with_test_file else {}
    threads = []
    real = snapshot._Hashing
    monkeypatch.setattr(snapshot, "_Hashing", lambda sources: threads.append(real(sources)) or threads[-1])
    ref = ingest_source(src, str(tmp_path / "s"), **kw)
    assert len(threads) == 1 and not threads[0]._thread.is_alive()
    plan = planned_snapshot(src, str(tmp_path / "s"), **kw)
    assert plan.exists and ref.snapshot == plan.snapshot
    m = ref.manifest
    with open(src, "rb") as f:
        want = {"url": src, "sha256": hashlib.sha256(f.read()).hexdigest(), "bytes": os.path.getsize(src)}
    assert m["source"] == want
    if with_test_file:
        assert (m["test_source"]["sha256"], m["test_source"]["bytes"]) == plan.test_info[::-1]
    bad = str(tmp_path / "bad.csv")
    with open(bad, "w") as f:
        f.write("userId,movieId,rating,timestamp\n" + "1,1,x,1\n" * 50 + "1,2,3,4\n")
    with pytest.raises(InputError, match="rows rejected"):  # the helper thread is stopped too
        ingest_source(bad, str(tmp_path / "s2"))
    assert len(threads) == 2 and not threads[1]._thread.is_alive()
    assert list_snapshots(str(tmp_path / "s2"), "bad") == []


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.lists(st.sampled_from([str(k) for k in range(60)] + ["u", "007", "é"]), max_size=40),
                      max_size=12),
       cut=st.integers(0, 11))
def test_id_map_encodes_like_a_dict_in_first_seen_order(calls, cut):
    """Whichever way a lookup goes (pc.index_in, or the dict for a few ids among many), indices are
    first-seen order; truncate forgets the later ids."""
    ids, ref = IdMap(), {}
    marks = []
    for k, call in enumerate(calls):
        if k == cut:
            marks.append((ids.n, dict(ref)))
        got = ids.encode(pa.array(call, pa.string())).tolist()
        for v in call:
            ref.setdefault(v, len(ref))
        assert got == [ref[v] for v in call]
    assert ids.added_since(0).to_pylist() == list(ref)
    if marks:
        n, before = marks[0]
        ids.truncate(n)
        assert ids.added_since(0).to_pylist() == list(before)
        probe = [str(k) for k in range(60)]
        want, seen = [], dict(before)
        for v in probe:
            want.append(seen.setdefault(v, len(seen)))
        assert ids.encode(pa.array(probe, pa.string())).tolist() == want


def test_id_map_dict_lookups_survive_truncation():
    ids = IdMap()
    ids.encode(pa.array([str(k) for k in range(100)], pa.string()))
    assert ids.encode(pa.array(["7", "x", "99", "x"], pa.string())).tolist() == [7, 100, 99, 100]  # the dict path
    assert ids._index is not None
    ids.truncate(50)
    assert ids.encode(pa.array(["60", "3"], pa.string())).tolist() == [50, 3]  # 60 was forgotten: new again
    assert ids.encode(pa.array(["x"], pa.string())).tolist() == [51]
    assert ids.added_since(49).to_pylist() == ["49", "60", "x"]


def test_fast_path_rows_beyond_the_first_block_estimate(tmp_path):
    """Long lines first, short ones after: the capacity estimated from the first block is too small,
    so the kept columns continue in further segments; rows and ids still equal the robust pass."""
    long_rows = [f"{'9' * 40}{k},{'8' * 40}{k % 7},{(k % 10 + 1) / 2},{k}" for k in range(200)]
    short_rows = [f"{k % 50},{k % 9},{(k % 10 + 1) / 2},{k}" for k in range(100_000)]
    src = str(tmp_path / "r.csv")
    with open(src, "w") as f:
        f.write("\n".join(["userId,movieId,rating,timestamp"] + long_rows + short_rows) + "\n")
    spec = detect_format(src, read_sample(src))
    out = {}
    for robust in (False, True):
        users, items = IdMap(), IdMap()
        rows = reader._read(src, spec, users, items, None, None, None, 4096, robust=robust)
        if not robust:
            assert len(rows.chunks["rating"]) > 1  # several segments
        out[robust] = [users.added_since(0), items.added_since(0)] + [
            rows.column(c) for c in ("user", "item", "rating", "timestamp")]
    for a, b in zip(out[False], out[True], strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("layout", ["grouped", "grouped-but-one", "random"])
def test_parallel_grouped_sort_is_the_stable_order(layout, monkeypatch):
    """Rows grouped by user are sorted in user-aligned segments on threads; a stray row (or no
    grouping) falls back to merging the sorted runs (or one sort). Always the stable order."""
    monkeypatch.setattr(ordering, "PARALLEL_MIN_ROWS", 1000)
    rng = np.random.default_rng(11)
    n, n_items = 60_000, 37
    u = np.sort(rng.integers(0, 900, n)).astype(np.int64)
    i = rng.integers(0, n_items, n).astype(np.int64)
    if layout == "grouped-but-one":
        u[n // 3] = 899  # a late user early in the file
    elif layout == "random":
        rng.shuffle(u)
    order, keys = sort_pairs(pair_keys(u, i, n_items), n_items, threads=3)
    want = _reference_order(u, i, n_items)
    assert np.array_equal(order, want) and np.array_equal(keys, u[want] * n_items + i[want])


def test_robust_path_with_many_kept_segments_equals_the_fast_path(tmp_path, monkeypatch):
    """The robust path keeps rows in several segments (and a small step splits them further): the
    snapshot equals the fast path's on the same rows."""
    monkeypatch.setattr(reader, "_STEP", 1000)
    monkeypatch.setattr(reader, "BLOCK_SIZE", 1 << 16)  # robust batches of ~4,000 rows
    text = _csv(150_000, 12)
    lines = text.splitlines()
    src_ok, src_bad = str(tmp_path / "ok.csv"), str(tmp_path / "bad.csv")
    with open(src_ok, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(src_bad, "w") as f:
        f.write("\n".join(lines[:70_000] + ["1,1,abc,1"] + lines[70_000:]) + "\n")
    fast = ingest_source(src_ok, str(tmp_path / "s1"), rating_range=(0.5, 5))
    robust = ingest_source(src_bad, str(tmp_path / "s2"), rating_range=(0.5, 5))
    assert (fast.manifest["read_path"], robust.manifest["read_path"]) == ("fast", "robust")
    assert robust.manifest["rows_rejected"] == 1
    assert read_ratings(fast).equals(read_ratings(robust))
    spec = detect_format(src_bad, read_sample(src_bad))
    rows = reader.read_rows(src_bad, spec, IdMap(), IdMap())
    assert rows.path == "robust" and len(rows.chunks["user"]) > 1
