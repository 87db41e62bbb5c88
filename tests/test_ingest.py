"""Ingest: formats, compression, ids, duplicates, rejects, errors, atomicity, re-ingest."""

from __future__ import annotations

import gzip
import json
import os
import zipfile

import numpy as np
import pyarrow as pa
import pytest

from factorflow.data.ingest import default_name, describe_rejects, infer_scale, ingest_source, reader, snapshot
from factorflow.data.ingest.formats import detect_format, read_sample
from factorflow.data.ingest.ids import IdMap
from factorflow.errors import DataWarning, InputError, NotFoundError, ParameterError
from factorflow.storage.datasets import (
    SnapshotRef,
    read_given_test,
    read_ids,
    read_ratings,
    read_rejects,
    resolve_snapshot,
)

ML_CSV = "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,20,3.5,101\n2,10,5.0,102\n3,30,0.5,103\n"


def write(path, text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def rows_of(ref: SnapshotRef, given_test: bool = False) -> list[tuple]:
    """Ratings as (raw user id, raw item id, rating, timestamp) in stored order."""
    t = read_given_test(ref) if given_test else read_ratings(ref)
    users = read_ids(ref, "user").column("user_id").to_pylist()
    items = read_ids(ref, "item").column("item_id").to_pylist()
    return [
        (users[u], items[i], r, ts)
        for u, i, r, ts in zip(*(t.column(c).to_pylist() for c in ("user_idx", "item_idx", "rating", "timestamp")),
                               strict=True)
    ]


def rejects_of(ref: SnapshotRef) -> list[tuple]:
    t = read_rejects(ref)
    return list(zip(t.column("line").to_pylist(), t.column("reason").to_pylist(), t.column("raw").to_pylist(),
                    strict=True))


def leftovers(store) -> list[str]:
    out = []
    for dirpath, dirnames, _ in os.walk(store):
        out += [os.path.join(dirpath, d) for d in dirnames]
    return out


# ------------------------------------------------------------------ formats


def test_movielens_csv(tmp_path):
    ref = ingest_source(write(tmp_path / "ratings.csv", ML_CSV), str(tmp_path / "s"))
    m = ref.manifest
    assert ref.name == "ratings" and not ref.reused and m["format"] == "movielens-csv"
    assert rows_of(ref) == [(1, 10, 4.0, 100), (1, 20, 3.5, 101), (2, 10, 5.0, 102), (3, 30, 0.5, 103)]
    assert (m["rows_read"], m["rows_kept"], m["rows_rejected"], m["rows_duplicate"]) == (4, 4, 0, 0)
    assert (m["n_users"], m["n_items"], m["rating_min"], m["rating_max"]) == (3, 3, 0.5, 5.0)
    assert m["rating_values"] == [0.5, 3.5, 4.0, 5.0] and m["rating_range"] == [0.5, 5.0]
    assert (m["timestamp_min"], m["timestamp_max"], m["has_timestamp"]) == (100, 103, True)
    assert m["source"]["bytes"] == len(ML_CSV) and len(m["source"]["sha256"]) == 64
    assert ref.snapshot == m["source"]["sha256"][:16] and m["schema_version"] == 1
    schema = read_ratings(ref).schema
    assert [(f.name, str(f.type)) for f in schema] == [
        ("user_idx", "int32"), ("item_idx", "int32"), ("rating", "float"), ("timestamp", "int64")
    ]  # fmt: skip
    assert read_ids(ref, "user").schema.field("user_id").type == pa.int64()


def test_ml100k_udata(tmp_path):
    src = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t878887116\n")
    ref = ingest_source(src, str(tmp_path / "s"))
    assert ref.manifest["format"] == "ml100k" and ref.name == "u"
    assert rows_of(ref) == [(186, 302, 3.0, 891717742), (196, 242, 3.0, 881250949), (196, 377, 1.0, 878887116)]


def test_ml1m_dat(tmp_path):
    src = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    ref = ingest_source(src, str(tmp_path / "s"))
    assert ref.manifest["format"] == "ml1m"
    assert rows_of(ref) == [(1, 661, 3.0, 978302109), (1, 1193, 5.0, 978300760), (2, 1193, 4.0, 978298413)]


def test_ml1m_broken_separator_is_wrong_column_count(tmp_path):
    src = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1:x:661::3::978302109\n1::2::3::4::5\n")
    ref = ingest_source(src, str(tmp_path / "s"), max_reject_fraction=1.0)
    assert rejects_of(ref) == [
        (2, "wrong column count", "1:x:661::3::978302109"),
        (3, "wrong column count", "1::2::3::4::5"),
    ]
    assert rows_of(ref) == [(1, 1193, 5.0, 978300760)]


def test_delimited_with_header_names(tmp_path):
    src = write(tmp_path / "x.tsv", "when\twho\twhat\tstars\n5\tann\tbook\t2\n6\tbob\tbook\t4\n")
    ref = ingest_source(
        src, str(tmp_path / "s"), fmt="delimited", columns="user=who,item=what,rating=stars,timestamp=when",
        delimiter="\t",
    )  # fmt: skip
    assert rows_of(ref) == [("ann", "book", 2.0, 5), ("bob", "book", 4.0, 6)]
    assert ref.manifest["columns"] == {"user": "who", "item": "what", "rating": "stars", "timestamp": "when"}


def test_delimited_positions_without_timestamp(tmp_path):
    """No timestamp column: timestamp = row order, so a later duplicate wins; has_timestamp false."""
    src = write(tmp_path / "x.csv", "a;p;4\nb;p;2\na;q;1\na;p;5\n")
    ref = ingest_source(src, str(tmp_path / "s"), columns={"user": "1", "item": "2", "rating": "3"})
    m = ref.manifest
    assert m["format"] == "delimited" and m["delimiter"] == ";" and m["has_timestamp"] is False
    assert rows_of(ref) == [("a", "p", 5.0, 3), ("a", "q", 1.0, 2), ("b", "p", 2.0, 1)]
    assert m["rows_duplicate"] == 1


@pytest.mark.parametrize("kind", ["gzip", "zip"])
def test_compressed_input(tmp_path, kind):
    if kind == "gzip":
        src = write(tmp_path / "ratings.csv.gz", gzip.compress(ML_CSV.encode()))
    else:
        src = str(tmp_path / "ratings.zip")
        with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("ml/ratings.csv", ML_CSV)
    ref = ingest_source(src, str(tmp_path / "s"))
    plain = ingest_source(write(tmp_path / "plain.csv", ML_CSV), str(tmp_path / "s"))
    assert ref.name == "ratings" and rows_of(ref) == rows_of(plain)
    assert ref.manifest["source"]["bytes"] == os.path.getsize(src)


def test_zip_with_two_members_is_an_error(tmp_path):
    src = str(tmp_path / "two.zip")
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("a.csv", ML_CSV)
        z.writestr("b.csv", ML_CSV)
    with pytest.raises(InputError, match=r"two.zip: zip has 2 files"):
        ingest_source(src, str(tmp_path / "s"))


def test_fsspec_url_source_and_store(tmp_path):
    import fsspec

    with fsspec.open("memory://in/ratings.csv", "wb") as f:
        f.write(ML_CSV.encode())
    ref = ingest_source("memory://in/ratings.csv", "memory://store")
    assert ref.manifest["rows_kept"] == 4 and rows_of(ref)[0] == (1, 10, 4.0, 100)
    assert resolve_snapshot("memory://store", "ratings").snapshot == ref.snapshot


def test_string_ids_are_kept_exactly(tmp_path):
    src = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\nu007,007,3,1\nu10,7,4,2\nu007,10,2,3\n")
    ref = ingest_source(src, str(tmp_path / "s"))
    users = read_ids(ref, "user").column("user_id")
    items = read_ids(ref, "item").column("item_id")
    assert users.type == pa.string() and users.to_pylist() == ["u007", "u10"]
    assert items.type == pa.string() and items.to_pylist() == ["007", "10", "7"]  # "007" is not 7
    assert rows_of(ref) == [("u007", "007", 3.0, 1), ("u007", "10", 2.0, 3), ("u10", "7", 4.0, 2)]


def test_integer_ids_sort_numerically():
    m = IdMap()
    provisional = m.encode(pa.array(["10", "9", "-3", "10", "100"]))
    assert provisional.tolist() == [0, 1, 2, 0, 3]
    remap, ids = m.finalize()
    assert ids.to_pylist() == [-3, 9, 10, 100] and remap[provisional].tolist() == [2, 1, 0, 2, 3]


def test_default_name():
    assert default_name("/x/ratings.csv.gz") == "ratings"
    assert default_name("s3://b/ml-1m/ratings.dat") == "ratings"
    assert default_name("/x/my data!.csv") == "my-data"
    assert default_name("u1.base") == "u1"


# ------------------------------------------------------------------ validation


def test_each_reject_reason_with_its_line(tmp_path):
    text = (
        "userId,movieId,rating,timestamp\n"  # 1
        "1,10,4.0,100\n"  # 2 ok
        "\n"  # 3 blank: skipped, not counted
        "1,11\n"  # 4
        "2,10,abc,5\n"  # 5
        "2,11,nan,5\n"  # 6
        ",11,3,5\n"  # 7
        "3,12,2.5,x\n"  # 8
        "3,13,7,5\n"  # 9
        "4,14,inf,5\n"  # 10
        "4,15,1e999,5\n"  # 11
        "5,16, 3.5 ,6\n"  # 12 ok (whitespace around a number)
        "6,17,4,\n"  # 13
        "7,18,4,5,9\n"  # 14
    )
    ref = ingest_source(write(tmp_path / "r.csv", text), str(tmp_path / "s"), rating_range=(0.5, 5),
                        max_reject_fraction=1)
    assert rejects_of(ref) == [
        (4, "wrong column count", "1,11"),
        (5, "non-numeric rating", "2,10,abc,5"),
        (6, "non-finite rating", "2,11,nan,5"),
        (7, "missing field", ",11,3,5"),
        (8, "unparsable timestamp", "3,12,2.5,x"),
        (9, "rating out of range", "3,13,7,5"),
        (10, "non-finite rating", "4,14,inf,5"),
        (11, "non-finite rating", "4,15,1e999,5"),
        (13, "missing field", "6,17,4,"),
        (14, "wrong column count", "7,18,4,5,9"),
    ]
    assert set(read_rejects(ref).column("source").to_pylist()) == {str(tmp_path / "r.csv")}
    assert rows_of(ref) == [(1, 10, 4.0, 100), (5, 16, 3.5, 6)]
    m = ref.manifest
    assert (m["rows_read"], m["rows_kept"], m["rows_rejected"], m["read_path"]) == (12, 2, 10, "robust")
    assert m["rating_range"] == [0.5, 5.0] and m["rating_range_declared"] is True


def test_line_numbers_across_many_blocks(tmp_path):
    """Bad rows spread over many small parser blocks keep their physical line numbers."""
    lines = ["userId,movieId,rating,timestamp"]
    expected = []
    for k in range(2, 3000):
        if k % 97 == 0:
            lines.append("9,9")
            expected.append((k, "wrong column count"))
        elif k % 89 == 0:
            lines.append(f"{k},1,bad,{k}")
            expected.append((k, "non-numeric rating"))
        elif k % 83 == 0:
            lines.append("")
        else:
            lines.append(f"{k},{k % 7},{(k % 10 + 1) / 2},{k}")
    src = write(tmp_path / "r.csv", "\n".join(lines) + "\n")
    users, items = IdMap(), IdMap()
    spec = detect_format(src, read_sample(src))
    rows = reader.read_rows(src, spec, users, items, block_size=4096)
    got = read_rejects_table(rows)
    assert got == expected and rows.path == "robust"
    assert rows.n_valid == len(rows.column("user")) == sum(1 for k in range(2, 3000) if k % 97 and k % 89 and k % 83)


def read_rejects_table(rows) -> list[tuple]:
    t = rows.rejects.table(rows.source)
    return list(zip(t.column("line").to_pylist(), t.column("reason").to_pylist(), strict=True))


def test_fast_and_robust_paths_agree(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    text = "userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r},{t}\n"
        for u, i, r, t in zip(rng.integers(0, 300, n), rng.integers(0, 50, n), rng.integers(1, 11, n) / 2,
                              rng.integers(0, 99, n), strict=True)
    )
    src = write(tmp_path / "r.csv", text)
    spec = detect_format(src, read_sample(src))
    out = {}
    for robust in (False, True):
        users, items = IdMap(), IdMap()
        rows = reader._read(src, spec, users, items, None, None, None, 8192, robust=robust)
        cols = [rows.column(c) for c in ("user", "item", "rating", "timestamp")]
        out[robust] = (users.finalize()[1], items.finalize()[1], *cols)
    for a, b in zip(out[False], out[True], strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_duplicates_latest_timestamp_then_last_seen(tmp_path):
    text = (
        "userId,movieId,rating,timestamp\n"
        "1,1,1.0,50\n"
        "1,1,2.0,70\n"  # latest timestamp: wins
        "1,1,3.0,60\n"
        "2,1,1.0,5\n"
        "2,1,2.0,5\n"  # tie: last seen wins
        "2,2,4.0,1\n"
    )
    ref = ingest_source(write(tmp_path / "r.csv", text), str(tmp_path / "s"))
    assert rows_of(ref) == [(1, 1, 2.0, 70), (2, 1, 2.0, 5), (2, 2, 4.0, 1)]
    assert (ref.manifest["rows_read"], ref.manifest["rows_kept"], ref.manifest["rows_duplicate"]) == (6, 3, 3)


def test_resolve_duplicates_matches_a_plain_loop():
    rng = np.random.default_rng(3)
    u, i = rng.integers(0, 5, 400).astype(np.int32), rng.integers(0, 4, 400).astype(np.int32)
    t = rng.integers(0, 6, 400)
    best: dict[tuple[int, int], int] = {}
    for k in range(400):
        key = (int(u[k]), int(i[k]))
        if key not in best or t[k] >= t[best[key]]:
            best[key] = k
    assert snapshot.resolve_duplicates(u, i, t, 4).tolist() == [best[key] for key in sorted(best)]


def test_reject_fraction_failure_writes_nothing(tmp_path):
    lines = ["userId,movieId,rating,timestamp"] + [f"{k},1,4,{k}" for k in range(95)]
    lines[5] = "5,1,x,5"
    lines[17] = "17,1,4,soon"
    lines[40] = "40,1"
    src = write(tmp_path / "r.csv", "\n".join(lines) + "\n")
    store = tmp_path / "s"
    with pytest.raises(InputError) as err:
        ingest_source(src, str(store))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (
        f"{src}: 3 of 95 rows rejected (3.16% > --max-reject-fraction 1%); first bad lines: "
        "6 (non-numeric rating), 18 (unparsable timestamp), 41 (wrong column count)"
    )
    assert not (store / "datasets").exists() or leftovers(store / "datasets") == []
    ref = ingest_source(src, str(store), max_reject_fraction=0.05)
    assert ref.manifest["rows_rejected"] == 3 and ref.manifest["rows_kept"] == 92


@pytest.mark.parametrize(
    "content, fmt, pattern",
    [
        (b"", None, r"empty file"),
        (b"\n\n", None, r"empty file"),
        (b"userId,movieId,rating,timestamp\n", None, r"no data rows"),
        (b"userId,itemId,rating\n1,2,3\n", "movielens-csv", r"lacks column\(s\) movieId"),
        (b"userId;movieId;rating;timestamp\n1;2;3;4\n", None, r"looks ';'-separated"),
        (b"1,2,3,4\n", "ml100k", r"does not split into 4 fields on '\\t'.*looks ','-separated"),
        (bytes(range(256)) * 8, None, r"binary data"),
        (b"\xff\xfe\xfa garbage \xc3\x28 more" * 10, None, r"binary data"),
    ],
)
def test_unreadable_files_give_one_clear_error(tmp_path, content, fmt, pattern):
    src = write(tmp_path / "bad.csv", content)
    store = tmp_path / "s"
    with pytest.raises(InputError, match=pattern) as err:
        ingest_source(src, str(store), fmt=fmt)
    assert str(err.value).startswith(src) and "\n" not in str(err.value)
    assert not store.exists() or leftovers(store) == []


def test_gzip_of_garbage_and_missing_file(tmp_path):
    src = write(tmp_path / "x.csv.gz", gzip.compress(np.random.default_rng(0).bytes(4000)))
    with pytest.raises(InputError, match=r"x.csv.gz: looks like binary"):
        ingest_source(src, str(tmp_path / "s"))
    whole = gzip.compress((ML_CSV * 2000).encode())
    cut = write(tmp_path / "cut.csv.gz", whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut.csv.gz: cannot read or decompress"):
        ingest_source(cut, str(tmp_path / "s"))
    assert not (tmp_path / "s").exists() or leftovers(tmp_path / "s") == []
    with pytest.raises(InputError, match=r"nope.csv: file not found"):
        ingest_source(str(tmp_path / "nope.csv"), str(tmp_path / "s"))


def test_parameter_errors(tmp_path):
    src = write(tmp_path / "r.csv", ML_CSV)
    with pytest.raises(ParameterError, match="--columns"):
        ingest_source(src, str(tmp_path / "s"), fmt="delimited")
    with pytest.raises(ParameterError, match="rating_range"):
        ingest_source(src, str(tmp_path / "s"), rating_range=(5, 1))
    with pytest.raises(ParameterError, match="--format"):
        ingest_source(src, str(tmp_path / "s"), fmt="xlsx")


def test_ratings_on_no_common_scale_warn_and_keep_all_but_gross_outliers(tmp_path):
    text = "userId,movieId,rating\n" + "".join(f"{k},{k % 7},{100 + k % 150}\n" for k in range(300)) + "1,1,9999\n"
    with pytest.warns(DataWarning, match=r"fit no common rating scale, so the scale is the bulk ± its width: -49..398"):
        ref = ingest_source(write(tmp_path / "r.csv", text), str(tmp_path / "s"))
    m = ref.manifest
    assert m["rating_range"] == [-49.0, 398.0] and m["rating_range_declared"] is False
    assert m["rating_range_inferred_from"] == {"rule": "bulk ± width", "bulk": [100.0, 249.0], "set_aside_each_side": 1,
                                               "n_ratings": 301}
    assert (m["rows_kept"], m["rows_rejected"]) == (300, 1) and rejects_of(ref) == [
        (302, "rating outside the inferred scale -49..398", "1,1,9999")
    ]


# ------------------------------------------------------------------ snapshots


def test_failure_mid_write_leaves_no_snapshot(tmp_path, monkeypatch):
    real = snapshot.write_table

    def failing(fs, path, table, **options):
        if path.endswith("items.parquet"):
            raise OSError("disk full (injected)")
        real(fs, path, table, **options)

    monkeypatch.setattr(snapshot, "write_table", failing)
    store = tmp_path / "s"
    with pytest.raises(OSError, match="injected"):
        ingest_source(write(tmp_path / "r.csv", ML_CSV), str(store))
    assert leftovers(store / "datasets") == [str(store / "datasets" / "r")]  # the parent only, empty
    with pytest.raises(NotFoundError):
        resolve_snapshot(str(store), "r")


def test_reingest_is_a_no_op(tmp_path, monkeypatch):
    src = write(tmp_path / "r.csv", ML_CSV)
    first = ingest_source(src, str(tmp_path / "s"))
    manifest = os.path.join(first.path, "manifest.json")
    stamp = (os.stat(first.path).st_mtime_ns, os.stat(manifest).st_mtime_ns)

    def must_not_parse(*a, **k):
        raise AssertionError("the file was parsed again")

    monkeypatch.setattr(snapshot, "read_rows", must_not_parse)
    again = ingest_source(src, str(tmp_path / "s"))
    assert again.reused and again.snapshot == first.snapshot and again.path == first.path
    assert again.manifest["created_at"] == first.manifest["created_at"]
    assert (os.stat(first.path).st_mtime_ns, os.stat(manifest).st_mtime_ns) == stamp
    with open(manifest) as f:
        assert json.load(f) == first.manifest


def test_options_change_the_snapshot_id(tmp_path):
    src = write(tmp_path / "r.csv", ML_CSV)
    a = ingest_source(src, str(tmp_path / "s"))
    b = ingest_source(src, str(tmp_path / "s"), rating_range=(0.5, 5))
    assert a.snapshot != b.snapshot and not b.reused


def test_resolve_snapshot_latest_and_errors(tmp_path):
    store = str(tmp_path / "s")
    a = ingest_source(write(tmp_path / "r.csv", ML_CSV), store, "ml")
    b = ingest_source(write(tmp_path / "r2.csv", ML_CSV + "4,40,2.0,104\n"), store, "ml")
    assert resolve_snapshot(store, "ml").snapshot == b.snapshot
    assert resolve_snapshot(store, "ml", a.snapshot).manifest["rows_kept"] == 4
    with pytest.raises(NotFoundError, match=r"dataset 'nope' not found .*datasets there: ml"):
        resolve_snapshot(store, "nope")
    with pytest.raises(NotFoundError, match=rf"snapshots: .*{a.snapshot}"):
        resolve_snapshot(store, "ml", "0000")
    ref = SnapshotRef.from_dict(json.loads(json.dumps(b.to_dict())))
    assert ref == b and read_ratings(ref, ["rating"]).num_rows == 5
    with pytest.raises(NotFoundError, match="no given test set"):
        read_given_test(ref)


def test_two_file_ingest_shares_one_id_space(tmp_path):
    base = write(tmp_path / "u1.base", "1\t10\t4\t100\n2\t10\t3\t101\n2\t20\t5\t102\n")
    test = write(tmp_path / "u1.test", "1\t20\t2\t103\n3\t30\t4\t104\nbad line\n1\t10\t9\t105\n")
    ref = ingest_source(base, str(tmp_path / "s"), test_source=test, max_reject_fraction=0.5)
    m = ref.manifest
    assert ref.name == "u1" and m["n_users"] == 3 and m["n_items"] == 3 and m["n_test"] == 2
    assert m["test_source"]["url"] == test and m["test_source"]["rows_rejected"] == 2
    assert rows_of(ref) == [(1, 10, 4.0, 100), (2, 10, 3.0, 101), (2, 20, 5.0, 102)]
    assert rows_of(ref, given_test=True) == [(1, 20, 2.0, 103), (3, 30, 4.0, 104)]
    rej = read_rejects(ref)
    assert rej.column("source").to_pylist() == [test] * 2 and rej.column("line").to_pylist() == [3, 4]
    # the 9 fits a 1..10 scale, but the given test set is held to the train file's scale
    assert rej.column("reason").to_pylist() == ["wrong column count", "rating outside the inferred scale 1..5"]
    assert m["rating_range"] == [1.0, 5.0]
    alone = ingest_source(base, str(tmp_path / "s"))
    assert alone.snapshot != ref.snapshot


def test_progress_reports_bytes_read(tmp_path):
    text = "userId,movieId,rating,timestamp\n" + "".join(
        f"{k % 50},{k % 70},{k % 10 / 2 + 0.5},{k}\n" for k in range(3000))
    src = write(tmp_path / "r.csv.gz", gzip.compress(text.encode()))
    calls = []
    ingest_source(src, str(tmp_path / "s"), progress=lambda done, total, msg="": calls.append((done, total)))
    size = os.path.getsize(src)
    assert calls and all(total == size for _, total in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == size


# ------------------------------------------------------------------ inferred rating scale


def _scale(values) -> tuple[float, float, str]:
    s = infer_scale(np.asarray(values, np.float32))
    return s.low, s.high, s.rule


def test_infer_scale_snaps_the_bulk_to_a_common_scale():
    rng = np.random.default_rng(0)
    half = rng.integers(1, 11, 5000) / 2
    assert _scale(half) == (0.5, 5.0, "common scale")
    assert _scale(rng.integers(1, 6, 5000)) == (1.0, 5.0, "common scale")
    assert _scale(rng.integers(2, 5, 5000)) == (1.0, 5.0, "common scale")  # 2..4 used of a 1..5 scale
    assert _scale(rng.uniform(-9.95, 9.95, 5000)) == (-10.0, 10.0, "common scale")  # Jester
    assert _scale(rng.uniform(0, 1, 5000)) == (0.0, 1.0, "common scale")
    assert _scale(rng.integers(0, 101, 5000)) == (0.0, 100.0, "common scale")
    assert _scale([4.0] * 50) == (1.0, 5.0, "common scale")  # zero variance


def test_infer_scale_sets_outliers_aside():
    ones_to_fives = list(np.arange(2000) % 5 + 1)
    assert _scale(ones_to_fives + [1e6]) == (1.0, 5.0, "common scale")
    assert _scale(ones_to_fives + [7, 1e6]) == (1.0, 5.0, "common scale")  # k = 2 on each side at n = 2002
    assert _scale(ones_to_fives[:20] + [7]) == (1.0, 5.0, "common scale")
    assert _scale(ones_to_fives[:20] + [-1]) == (1.0, 5.0, "common scale")
    # too few values to tell: the whole range is the bulk, and it fits no common scale
    assert _scale([1, 3, 1e6]) == (1 - 999_999, 1e6 + 999_999, "bulk ± width")


def test_infer_scale_widens_to_a_neighbour_for_rare_edge_values():
    """A lone 0.5 among half stars is set aside by the trim, yet kept: 0.5..5 is 1..5's neighbour."""
    values = list(np.arange(500) % 9 / 2 + 1) + [0.5]  # 1, 1.5, ..., 5 and one 0.5
    assert _scale(values) == (0.5, 5.0, "common scale")
    assert _scale(list(np.arange(500) % 10 + 1) + [0]) == (0.0, 10.0, "common scale")
    assert _scale(list(np.arange(500) % 5 + 1) + [0.5, 1e6]) == (0.5, 5.0, "common scale")


def test_infer_scale_from_a_one_value_bulk_uses_the_whole_range_when_a_common_scale_holds_it():
    """Hypothesis found six 0.5s and a 1.5 rejecting the 1.5 (bulk 0.5..0.5 → scale 0..1)."""
    assert _scale([0.5] * 6 + [1.5]) == (0.5, 5.0, "common scale")
    assert _scale([1.0] * 30 + [7]) == (1.0, 7.0, "common scale")
    assert _scale([4.0] * 1000 + [1e6]) == (1.0, 5.0, "common scale")  # no common scale holds 1e6


def test_infer_scale_without_a_common_scale_keeps_all_but_gross_outliers():
    s = infer_scale(np.arange(101, 249, dtype=np.float32))
    assert (s.low, s.high, s.rule, s.bulk) == (102 - 145, 247 + 145, "bulk ± width", (102.0, 247.0))
    assert _scale([250.0] * 20) == (0.0, 500.0, "bulk ± width")  # equal values: the width is their magnitude


OUTLIERS = (
    "userId,movieId,rating,timestamp\r\n"  # 1
    + "".join(f"{u},{i},{(u + i) % 5 + 1},{u}\r\n" for u in range(1, 41) for i in range(1, 31))  # 2..1201
    + "\r\n"  # 1202 blank
    + "99,1,1e6,7\r\n"  # 1203: user 99 is only here
    + "3,99,7,7\r\n"  # 1204: item 99 is only here
    + "4,1,-2.5,8\r\n"  # 1205
)  # 1203 ratings: 2 set aside on each side


@pytest.mark.parametrize("robust", [False, True])
def test_ratings_outside_the_inferred_scale_are_rejected_with_their_line(tmp_path, robust):
    text = OUTLIERS + ("5,5\r\n6,6,x,1\r\n" if robust else "")  # 1206, 1207: malformed rows force the robust path
    src = write(tmp_path / "r.csv", text)
    with pytest.warns(DataWarning,
                      match=r"3 rating\(s\) outside the inferred scale 1..5 rejected \(lines 1203, 1204, 1205\)"):
        ref = ingest_source(src, str(tmp_path / "s"))
    m = ref.manifest
    reason = "rating outside the inferred scale 1..5"
    expected = [(1203, reason, "99,1,1e6,7"), (1204, reason, "3,99,7,7"), (1205, reason, "4,1,-2.5,8")]
    if robust:
        expected += [(1206, "wrong column count", "5,5"), (1207, "non-numeric rating", "6,6,x,1")]
    assert rejects_of(ref) == expected and m["read_path"] == ("robust" if robust else "fast")
    assert (m["rows_read"], m["rows_kept"], m["rows_rejected"]) == (1203 + 2 * robust, 1200, 3 + 2 * robust)
    assert m["rating_range"] == [1.0, 5.0] and m["rating_range_declared"] is False
    assert m["rating_range_inferred_from"] == {"rule": "common scale", "bulk": [1.0, 5.0], "set_aside_each_side": 2,
                                               "n_ratings": 1203}
    assert m["rejects_by_reason"][reason] == 3
    # ids seen only in rejected rows are not in the id tables
    assert read_ids(ref, "user").column("user_id").to_pylist() == list(range(1, 41))
    assert read_ids(ref, "item").column("item_id").to_pylist() == list(range(1, 31))
    assert describe_rejects(ref) == (
        f"{3 + 2 * robust} rows rejected (3 {reason}"
        + (", 1 non-numeric rating, 1 wrong column count" if robust else "")
        + f"); see {ref.path}/rejects.parquet"
    )


def test_outside_scale_rows_count_toward_max_reject_fraction(tmp_path):
    src = write(tmp_path / "r.csv", OUTLIERS)
    with pytest.raises(InputError) as err, pytest.warns(DataWarning):
        ingest_source(src, str(tmp_path / "s"), max_reject_fraction=0.001)
    assert str(err.value) == (
        f"{src}: 3 of 1203 rows rejected (0.249% > --max-reject-fraction 0.1%); first bad lines: 1203 (rating outside "
        "the inferred scale 1..5), 1204 (rating outside the inferred scale 1..5), 1205 (rating outside the inferred "
        "scale 1..5)"
    )
    assert leftovers(tmp_path / "s" / "datasets") == []


def test_declared_range_is_used_as_is(tmp_path):
    ref = ingest_source(write(tmp_path / "r.csv", OUTLIERS), str(tmp_path / "s"), rating_range=(-5, 10))
    m = ref.manifest
    assert m["rating_range"] == [-5.0, 10.0] and m["rating_range_declared"] is True
    assert m["rating_range_inferred_from"] is None
    assert rejects_of(ref) == [(1203, "rating out of range", "99,1,1e6,7")]


@pytest.mark.parametrize("kind", ["lone-cr", "gzip", "no-final-newline", "blank-lines-first-block"])
def test_outlier_lines_under_other_line_ends_and_compression(tmp_path, kind):
    body = [f"{k % 13},{k % 7},{k % 5 + 1},{k}" for k in range(3000)]
    body[2500] = "1,1,99,1"
    lines = ["userId,movieId,rating,timestamp", *body]
    if kind == "blank-lines-first-block":
        lines[10:10] = ["", ""]
    text = ("\r" if kind == "lone-cr" else "\n").join(lines) + ("" if kind == "no-final-newline" else "\n")
    want_line = 2502 + (2 if kind == "blank-lines-first-block" else 0)
    if kind == "no-final-newline":
        text += "\n9,9,1e9,9"
    data = gzip.compress(text.encode()) if kind == "gzip" else text.encode()
    src = write(tmp_path / ("r.csv.gz" if kind == "gzip" else "r.csv"), data)
    with pytest.warns(DataWarning):
        ref = ingest_source(src, str(tmp_path / "s"))
    got = rejects_of(ref)
    assert got[0] == (want_line, "rating outside the inferred scale 1..5", "1,1,99,1")
    if kind == "no-final-newline":
        assert got[1] == (3002, "rating outside the inferred scale 1..5", "9,9,1e9,9")


def test_given_test_file_uses_the_train_scale(tmp_path):
    base = write(tmp_path / "u1.base",
                 "".join(f"{u}\t{i}\t{(u * i) % 5 + 1}\t{u}\n" for u in range(1, 30) for i in (1, 2)))
    test = write(tmp_path / "u1.test", "1\t3\t4\t1\n2\t3\t10\t1\n")  # 10 would fit a 1..10 scale of its own
    with pytest.warns(DataWarning,
                      match=r"u1.test: 1 rating\(s\) outside the inferred scale 1..5 rejected \(lines 2\)"):
        ref = ingest_source(base, str(tmp_path / "s"), test_source=test, max_reject_fraction=0.5)
    assert ref.manifest["rating_range"] == [1.0, 5.0] and ref.manifest["n_test"] == 1
    assert rejects_of(ref) == [(2, "rating outside the inferred scale 1..5", "2\t3\t10\t1")]
    assert describe_rejects(ref).startswith("1 row rejected (1 rating outside the inferred scale 1..5); see ")


def test_describe_rejects_is_none_without_rejects(tmp_path):
    assert describe_rejects(ingest_source(write(tmp_path / "r.csv", ML_CSV), str(tmp_path / "s"))) is None


# ------------------------------------------------------------------ quoting, line breaks, odd bytes


def test_quoted_fields_take_the_robust_path_and_keep_their_text(tmp_path):
    text = 'userId,movieId,rating,timestamp\n"1",10,4,1\n"a,b",10,"3.5",2\n2,"x""y",5,3\n'
    ref = ingest_source(write(tmp_path / "r.csv", text), str(tmp_path / "s"))
    assert ref.manifest["read_path"] == "robust"
    assert rows_of(ref) == [("1", "10", 4.0, 1), ("2", 'x"y', 5.0, 3), ("a,b", "10", 3.5, 2)]


@pytest.mark.parametrize("block_size", [64, 1 << 20])
def test_a_quoted_line_break_is_one_error_at_its_line_at_any_block_size(tmp_path, block_size):
    text = "userId,movieId,rating,timestamp\n" + "".join(f"{k},1,4,{k}\n" for k in range(30))
    text += '7,"unclosed,4,1\n8,2,4,1\n9,3,4,1\n'  # line 32 opens a quote that swallows the rest
    src = write(tmp_path / "r.csv", text)
    spec = detect_format(src, read_sample(src))
    with pytest.raises(InputError, match=r"r.csv: line 32: a quoted field runs over a line break"):
        reader.read_rows(src, spec, IdMap(), IdMap(), block_size=block_size)
    closed = text.replace("8,2,4,1", 'x",2,4,1')  # a closed quote spanning lines 32-33: same error
    src2 = write(tmp_path / "r2.csv", closed)
    with pytest.raises(InputError, match=r"r2.csv: line 32: a quoted field runs over a line break"):
        reader.read_rows(src2, spec, IdMap(), IdMap(), block_size=block_size)


def test_nul_byte_in_an_id_past_the_sample_is_a_reject(tmp_path):
    rows = [f"{k},{k % 50},{k % 5 + 1},{k}" for k in range(20000)]
    rows[15000] = "15000,1\x00\x00,3,15000"  # past the first 64 KiB that are sniffed for binary data
    src = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    ref = ingest_source(src, str(tmp_path / "s"))
    assert rejects_of(ref) == [(15002, "NUL byte in an id", "15000,1\x00\x00,3,15000")]
    assert read_ids(ref, "item").schema.field("item_id").type == pa.int64()


def test_ratings_beyond_float32_are_non_finite(tmp_path):
    text = "userId,movieId,rating,timestamp\n1,1,4,1\n1,2,1e39,1\n1,3,-4e38,1\n" + "2,1,3,1\n" * 3
    ref = ingest_source(write(tmp_path / "r.csv", text), str(tmp_path / "s"), max_reject_fraction=0.5)
    assert [r[:2] for r in rejects_of(ref)] == [(3, "non-finite rating"), (4, "non-finite rating")]


def test_integer_ids_use_the_whole_int64_range(tmp_path):
    big = "userId,movieId,rating,timestamp\n9223372036854775807,-9223372036854775808,4,1\n1,2,3,2\n"
    ref = ingest_source(write(tmp_path / "r.csv", big), str(tmp_path / "s"))
    assert rows_of(ref) == [(1, 2, 3.0, 2), (2**63 - 1, -(2**63), 4.0, 1)]
    over = big.replace("9223372036854775807", "9223372036854775808")
    ref = ingest_source(write(tmp_path / "r2.csv", over), str(tmp_path / "s"))
    assert read_ids(ref, "user").column("user_id").to_pylist() == ["1", "9223372036854775808"]
    assert read_ids(ref, "item").schema.field("item_id").type == pa.int64()



def test_robust_pass_sees_every_row_after_the_fast_path_gives_up(tmp_path):
    """The fast path's abandoned reader may still be reading ahead when the robust pass opens the
    file; closing the fast path's file let the robust pass reuse its descriptor, and rows went
    missing (a race: with the bug, most of these runs lost rows)."""
    n = 500_000
    body = [f"{k % 14000 + 1},{k * 7919 % 8000 + 1},{(k % 10 + 1) / 2},{1_000_000_000 + k * 37}\n" for k in range(n)]
    body[2000:2000] = ["5,5,abc,5\n", "5,5\n"]  # the fast path gives up in its first block
    src = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n" + "".join(body))
    spec = detect_format(src, read_sample(src))
    for _ in range(3):
        rows = reader.read_rows(src, spec, IdMap(), IdMap(), block_size=4 << 20)
        assert (rows.path, rows.rows_read, rows.n_valid) == ("robust", n + 2, n)
