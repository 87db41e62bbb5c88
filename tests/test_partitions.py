"""Partitions: balance (heavy-tailed real and synthetic data), exact round-trip, partitioner properties."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factorflow.cli import main
from factorflow.data.ingest import ingest_source
from factorflow.data.partitions import (
    balanced_boundaries,
    build_partitions,
    default_n_blocks,
    write_csr_partitions,
)
from factorflow.data.splits import make_split
from factorflow.data.synth import write_synthetic_csv
from factorflow.errors import NotFoundError, ParameterError
from factorflow.storage.partitions import PartitionsRef, assemble, load_block, load_partitions
from factorflow.storage.splits import read_train, train_csr

ML_SMALL = os.path.join(os.path.dirname(__file__), "data", "ml-latest-small", "ratings.csv")


@pytest.fixture(scope="module")
def ml_split(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("store"))
    snap = ingest_source(ML_SMALL, store, "ml")
    return store, make_split(snap, "random", test_fraction=0.2, seed=42)


@pytest.fixture(scope="module")
def synth_split(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    csv = str(d / "s.csv")
    write_synthetic_csv(csv, 3000, 2500, 400_000, seed=5)
    snap = ingest_source(csv, str(d / "store"), "synth")
    return make_split(snap, "random", test_fraction=0.1, seed=1)


def _block_nnz(ref: PartitionsRef, side: str) -> np.ndarray:
    return np.array([b["nnz"] for b in ref.manifest[side]])


@pytest.mark.parametrize("p", [4, 8, 16])
def test_balance_on_ml_latest_small(ml_split, p):
    _, split = ml_split
    ref = build_partitions(split, p)
    for side in ("user", "item"):
        nnz = _block_nnz(ref, side)
        assert len(nnz) == p and nnz.sum() == split.manifest["n_train"]
        assert nnz.max() <= 1.5 * nnz.mean(), (side, nnz)


@pytest.mark.parametrize("p", [4, 16, 32])
def test_balance_on_synthetic(synth_split, p):
    ref = build_partitions(synth_split, p)
    for side in ("user", "item"):
        nnz = _block_nnz(ref, side)
        assert len(nnz) == p and nnz.max() <= 1.5 * nnz.mean(), (side, nnz)
    # rows-balanced cuts would be far worse on this heavy-tailed data
    m = train_csr(synth_split)
    even = np.linspace(0, m.shape[0], p + 1).astype(int)
    naive = np.diff(m.indptr[even])
    assert naive.max() > _block_nnz(ref, "user").max()


def test_blocks_reassemble_to_the_exact_csr(ml_split):
    _, split = ml_split
    ref = build_partitions(split, 5)
    csr = train_csr(split)
    users = [load_block(ref.path, "user", b) for b in range(5)]
    items = [load_block(ref.path, "item", b) for b in range(5)]
    for blocks, expect in ((users, csr), (items, csr.T.tocsr())):
        got = assemble(blocks[::-1])  # order of the list does not matter
        assert got.shape == expect.shape and got.dtype == np.float32
        assert np.array_equal(got.indptr, expect.indptr)
        assert np.array_equal(got.indices, expect.indices)
        assert np.array_equal(got.data, expect.data)
    b = users[2]
    assert b.indptr.dtype == np.int64 and b.indices.dtype == np.int32 and b.data.dtype == np.float32
    assert b.indptr[0] == 0 and b.nnz == ref.manifest["user"][2]["nnz"] and b.n_rows == b.stop - b.start
    assert (b.start, b.stop) == (ref.manifest["user"][2]["start"], ref.manifest["user"][2]["stop"])
    sub = assemble(users[1:3])
    assert (sub != csr[users[1].start : users[2].stop]).nnz == 0


def test_manifest_global_mean_and_reuse(ml_split):
    _, split = ml_split
    ref = build_partitions(split, 6)
    m = json.load(open(os.path.join(ref.path, "partitions.json")))
    assert m == ref.manifest
    tr = read_train(split).column("rating").to_numpy().astype(np.float64)
    assert m["global_mean"] == pytest.approx(tr.mean(), abs=1e-9)
    assert (m["n_users"], m["n_items"], m["nnz"], m["n_blocks"]) == (610, 9724, 80669, 6)
    assert ref.path.endswith("partitions/p6") and not ref.reused
    again = build_partitions(split, 6)
    assert again.reused and again.manifest == ref.manifest
    assert load_partitions(ref.path).manifest == ref.manifest
    assert PartitionsRef.from_dict(ref.to_dict()) == ref


def test_manifest_checksums_are_those_of_the_files_and_a_csr_writes_the_same_blocks(ml_split, tmp_path):
    """The writer hashes each block from the bytes it wrote: the manifest lists exactly what a fresh
    checksum of the folder gives, and write_csr_partitions on the train CSR writes byte-identical files."""
    import fsspec

    from factorflow.storage.checksums import checksums

    _, split = ml_split
    ref = build_partitions(split, 3)
    fs = fsspec.filesystem("file")
    assert ref.manifest["files"] == checksums(fs, ref.path, exclude=("partitions.json",))
    other = write_csr_partitions(str(tmp_path), split.split, train_csr(split), 3)
    assert other.manifest["files"] == ref.manifest["files"]
    strip = lambda m: {k: v for k, v in m.items() if k != "created_at"}  # noqa: E731
    assert strip(other.manifest) == strip(ref.manifest)


def test_default_p_and_clamping(ml_split, tmp_path):
    _, split = ml_split
    assert default_n_blocks(80_669) == 4 and default_n_blocks(20_000_263) == 64
    assert default_n_blocks(3_000_000) == 15
    ref = build_partitions(split)
    assert ref.manifest["n_blocks"] == 4 and ref.path.endswith("p4")
    with pytest.raises(ParameterError, match="^n_blocks="):
        build_partitions(split, 0)
    with pytest.raises(ParameterError, match="^side="):
        load_block(ref.path, "movie", 0)
    with pytest.raises(NotFoundError):
        load_block(ref.path, "user", 99)


def test_cli_split_and_partition(ml_split, capsys):
    store, _ = ml_split
    assert main(["split", "--store", store, "--name", "ml", "--kind", "temporal", "--per-user"]) == 0
    out = capsys.readouterr().out
    assert "temporal-user-f0.2" in out and "0 cold-user" in out
    assert main(["partition", "--store", store, "--name", "ml", "--split", "temporal-user-f0.2", "-p", "7"]) == 0
    out = capsys.readouterr().out
    assert "user: 7 blocks" in out and "item: 7 blocks" in out
    assert main(["partition", "--store", store, "--name", "ml", "--split", "nope"]) == 2
    assert "split 'nope' not found" in capsys.readouterr().err
    assert main(["split", "--store", store, "--name", "ml", "--kind", "given"]) == 2
    assert "--test-source" in capsys.readouterr().err
    assert main(["split", "--store", store, "--name", "ml", "--kind", "temporal", "--cutoff", "5",
                 "--test-fraction", "0.1"]) == 2  # fmt: skip


def test_split_on_ingested_given_pair(tmp_path):
    ratings = pd.read_csv(ML_SMALL)
    late = ratings.timestamp >= ratings.timestamp.quantile(0.9)
    ratings[~late].to_csv(tmp_path / "base.csv", index=False)
    ratings[late].to_csv(tmp_path / "test.csv", index=False)
    snap = ingest_source(str(tmp_path / "base.csv"), str(tmp_path / "st"), "pair",
                         test_source=str(tmp_path / "test.csv"))
    ref = make_split(snap, "given")
    m = ref.manifest
    assert (m["n_train"], m["n_test"]) == ((~late).sum(), late.sum())
    assert (m["n_users"], m["n_items"]) == (610, 9724)
    new_users = set(ratings[late].userId) - set(ratings[~late].userId)
    assert m["n_test_cold_user"] == ratings[late].userId.isin(new_users).sum() > 0


# ------------------------------------------------------------------ properties of the partitioner


def _check(deg: np.ndarray, p: int) -> None:
    indptr = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    n = deg.size
    b = balanced_boundaries(indptr, p)
    blocks = min(p, n) if n else 1
    assert b[0] == 0 and b[-1] == n and b.size == blocks + 1
    assert np.all(np.diff(b) > 0) or n == 0  # monotone, no empty block (rows ≥ P after clamping)
    owner = np.repeat(np.arange(blocks), np.diff(b))
    assert owner.size == n  # every row in exactly one block
    nnz = np.diff(indptr[b])
    assert nnz.sum() == indptr[-1]  # all ratings covered
    mean, dmax = indptr[-1] / blocks, (deg.max() if n else 0)
    if n and dmax < mean:  # no row heavier than a block: every block within one row of the mean
        assert np.all(np.abs(nnz - mean) <= dmax)
    if n and dmax <= mean / 2:
        assert nnz.max() <= 1.5 * mean


@settings(max_examples=300, deadline=None)
@given(
    deg=st.lists(st.integers(0, 50), min_size=0, max_size=200),
    p=st.integers(1, 40),
)
def test_partitioner_properties_small(deg, p):
    _check(np.array(deg, dtype=np.int64), p)


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 5000),
    sigma=st.floats(0.1, 3.0),
    p=st.integers(1, 64),
    seed=st.integers(0, 2**31 - 1),
)
def test_partitioner_properties_heavy_tailed(n, sigma, p, seed):
    deg = np.floor(np.random.default_rng(seed).lognormal(2.0, sigma, size=n)).astype(np.int64)
    _check(deg, p)


def test_single_heavy_row_gets_its_own_block():
    deg = np.array([1, 1, 1, 1000, 1, 1, 1, 1])
    b = balanced_boundaries(np.concatenate([[0], np.cumsum(deg)]), 4)
    assert b.tolist()[0] == 0 and b[-1] == 8 and np.all(np.diff(b) > 0)
    assert 3 in b.tolist() and 4 in b.tolist()  # row 3 alone
    assert balanced_boundaries(np.array([0]), 3).tolist() == [0, 0]
    assert balanced_boundaries(np.array([0, 5, 7]), 9).tolist() == [0, 1, 2]


def test_fsspec_store_round_trip():
    store = "memory://ff-part-test"
    snap = ingest_source(ML_SMALL, store, "ml")
    split = make_split(snap, "random", test_fraction=0.2, seed=3)
    ref = build_partitions(split, 4)
    assert ref.path.startswith("memory://") and split.path.startswith("memory://")
    blocks = [load_block(ref.path, "item", b) for b in range(4)]
    assert (assemble(blocks) != train_csr(split).T.tocsr()).nnz == 0
    assert build_partitions(split, 4).reused and make_split(snap, "random", seed=3).reused


def test_train_csr_reads_the_user_blocks_when_written_and_equals_the_parquet_one(ml_split, tmp_path):
    """Once a partition set exists, ``train_csr`` stacks its user blocks: the same matrix as
    decoding train.parquet. A set whose block fails its checksum is passed over."""
    import scipy.sparse as sp

    from factorflow.storage.partitions import stacked_user_blocks

    def from_blocks():
        m = split.manifest
        return stacked_user_blocks(split.path, m["n_users"], m["n_items"], m["n_train"])

    _, split = ml_split
    ref = build_partitions(split, 5)
    t = read_train(split)
    expect = sp.csr_matrix((t.column("rating").to_numpy(), (t.column("user_idx").to_numpy(),
                                                           t.column("item_idx").to_numpy())),
                           shape=(split.manifest["n_users"], split.manifest["n_items"]))
    expect.sort_indices()
    got = from_blocks()
    assert got is not None and got.shape == expect.shape and got.dtype == np.float32
    assert np.array_equal(got.indptr, expect.indptr) and np.array_equal(got.indices, expect.indices)
    assert np.array_equal(got.data, expect.data)
    assert (train_csr(split) != expect).nnz == 0

    # a damaged block in every set: the blocks are passed over and train.parquet is read instead
    import glob

    blocks = glob.glob(os.path.join(split.path, "partitions", "p*", "user_000.npz"))
    assert os.path.join(ref.path, "user_000.npz") in blocks
    saved = {b: open(b, "rb").read() for b in blocks}
    try:
        for b, good in saved.items():
            with open(b, "r+b") as f:
                f.seek(len(good) // 2)
                f.write(bytes(x ^ 0xFF for x in good[len(good) // 2: len(good) // 2 + 16]))
        assert from_blocks() is None
        assert (train_csr(split) != expect).nnz == 0
    finally:
        for b, good in saved.items():
            with open(b, "wb") as f:
                f.write(good)
