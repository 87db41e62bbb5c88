"""Manifests carry checksums of the files they list; readers verify them and name a damaged file
in one line. Nothing in the package loads pickles."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from factorflow.errors import InputError
from factorflow.factors import FactorArrays
from factorflow.storage import registry as reg

PACKAGE = Path(__file__).parents[1] / "factorflow"


def _publish(store: Path) -> Path:
    rng = np.random.default_rng(0)
    f = FactorArrays(rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32),
                     np.zeros(6, np.float32), np.zeros(5, np.float32), 3.5)
    seen = sp.random(6, 5, density=0.4, format="csr", random_state=1)
    version = reg.publish(str(store), "m", f, pa.array(range(6)), pa.array(range(10, 15)), {"kind": "als"},
                          seen=seen)
    return store / "models" / "m" / "versions" / version


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_model_json_lists_every_table_with_size_and_sha256(tmp_path):
    import hashlib
    import json

    vdir = _publish(tmp_path)
    files = json.loads((vdir / "model.json").read_text())["files"]
    assert sorted(files) == ["item_factors.parquet", "seen.parquet", "user_factors.parquet"]
    for name, entry in files.items():
        data = (vdir / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("damage, phrase", [
    (lambda p: p.write_bytes(p.read_bytes()[:-40]), "but its manifest says"),
    (_flip_a_byte, "its SHA-256 does not match its manifest"),
])
def test_a_damaged_factor_table_is_one_clear_error(tmp_path, damage, phrase):
    vdir = _publish(tmp_path)
    damage(vdir / "item_factors.parquet")
    with pytest.raises(InputError, match=re.escape(str(vdir / "item_factors.parquet")) + ".*" + re.escape(phrase)):
        reg.load_model(str(tmp_path), "m")


def test_a_truncated_seen_table_is_caught_on_a_one_user_read(tmp_path):
    vdir = _publish(tmp_path)
    model = reg.load_model(str(tmp_path), "m")
    seen = vdir / "seen.parquet"
    seen.write_bytes(seen.read_bytes()[:-10])
    with pytest.raises(InputError, match="seen.parquet: .* bytes, but its manifest says"):
        model.seen_items(0)


def test_recommend_on_a_corrupted_model_is_one_line(tmp_path, capsys):
    from factorflow.cli import main

    vdir = _publish(tmp_path)
    _flip_a_byte(vdir / "user_factors.parquet")
    assert main(["recommend", "--model", "m", "--user", "1", "--store", str(tmp_path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"factorflow: error: {vdir / 'user_factors.parquet'}: its SHA-256 does not match")


def test_snapshot_split_and_partitions_are_verified(tmp_path):
    from factorflow.data.ingest import ingest_source
    from factorflow.data.partitions import build_partitions
    from factorflow.data.splits import make_split
    from factorflow.data.synth import write_synthetic_csv
    from factorflow.storage.partitions import load_block
    from factorflow.storage.splits import read_train

    src = tmp_path / "r.csv"
    write_synthetic_csv(str(src), 60, 40, 1500, seed=1)
    snap = ingest_source(str(src), str(tmp_path / "store"))
    assert set(snap.manifest["files"]) >= {"ratings.parquet", "users.parquet", "items.parquet", "rejects.parquet"}
    split = make_split(snap, "random")
    parts = build_partitions(split, 2)
    assert set(parts.manifest["files"]) == {"user_000.npz", "user_001.npz", "item_000.npz", "item_001.npz"}

    block = Path(parts.path) / "item_001.npz"
    _flip_a_byte(block)
    with pytest.raises(InputError, match="item_001.npz: its SHA-256 does not match"):
        load_block(parts.path, "item", 1)

    train = Path(split.path) / "train.parquet"
    train.write_bytes(train.read_bytes()[:100])
    with pytest.raises(InputError, match="train.parquet: 100 bytes, but its manifest says"):
        read_train(split)

    ratings = Path(snap.path) / "ratings.parquet"
    _flip_a_byte(ratings)
    with pytest.raises(InputError, match="ratings.parquet: its SHA-256 does not match"):
        make_split(snap, "temporal", test_fraction=0.3)


def test_nothing_loads_pickles():
    """Store files are Parquet, JSON and .npz loaded with allow_pickle=False; Prefect's cached task
    results are JSON too (its default serializer is pickle)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"allow_pickle\s*=\s*True|\bpickle\.loads?\(|\bcloudpickle\.loads?\(|read_pickle\(", line):
                offenders.append(f"{path}:{n}")
            if "np.load(" in line and "allow_pickle=False" not in line:
                offenders.append(f"{path}:{n}: np.load without allow_pickle=False")
            if "persist_result=True" in line and 'result_serializer="json"' not in line:
                offenders.append(f"{path}:{n}: persisted task result without the JSON serializer")
    assert offenders == []
