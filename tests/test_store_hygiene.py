"""Leftovers of killed writers are cleaned, live writers' folders never: stale ``.tmp-*``
temporaries and the ``runs/`` retention rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from factorflow.storage import fs as fsio
from factorflow.storage.runs import OWNER_FILE, prune_runs, start_run

DAY = 24 * 3600


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _tmp(parent: Path, name: str, pid: int, host: str | None = None) -> Path:
    path = parent / f".tmp-{name}-{host or fsio.host_name()}-p{pid}-{'a' * 12}"
    path.mkdir(parents=True)
    (path / "part.parquet").write_bytes(b"half")
    return path


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    for p in [*path.rglob("*"), path]:
        os.utime(p, (t, t))


def test_an_atomic_write_sweeps_stale_temporaries_only(tmp_path, sleeper):
    parent = tmp_path / "models" / "m" / "versions"
    dead = _tmp(parent, "v1", _dead_pid())
    live = _tmp(parent, "v2", sleeper)
    mine = _tmp(parent, "v3", os.getpid())
    other_host_old = _tmp(parent, "v4", 1, host="elsewhere")
    _age(other_host_old, 2 * DAY)
    other_host_new = _tmp(parent, "v5", 1, host="elsewhere")
    old_style = parent / ".tmp-v6-0123456789ab"
    old_style.mkdir()
    _age(old_style, 2 * DAY)
    fs = fsspec.filesystem("file")
    with fsio.atomic_dir(fs, str(parent / "v7")) as tmp:
        Path(tmp, "model.json").write_text("{}")
    left = sorted(p.name for p in parent.iterdir())
    assert left == sorted([live.name, mine.name, other_host_new.name, "v7"])
    assert not dead.exists() and not old_style.exists() and not other_host_old.exists()


def test_current_switch_sweeps_stale_temporary_files(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    stale = model / f".tmp-CURRENT-{fsio.host_name()}-p{_dead_pid()}-{'b' * 12}"
    stale.write_text("x\n")
    fsio.atomic_write_text(fsspec.filesystem("file"), str(model / "CURRENT"), "v\n")
    assert sorted(p.name for p in model.iterdir()) == ["CURRENT"]


def _run(store: Path, name: str, pid: int | None, age_s: float, host: str | None = None) -> Path:
    path = store / "runs" / name
    path.mkdir(parents=True)
    (path / "factors.npz").write_bytes(b"x")
    if pid is not None:
        (path / OWNER_FILE).write_text(json.dumps({"host": host or fsio.host_name(), "pid": pid}))
    _age(path, age_s)
    return path


def test_runs_keep_the_newest_and_every_live_one(tmp_path, sleeper):
    store = tmp_path / "store"
    dead = _dead_pid()
    newest = [_run(store, f"new{k}", dead, age_s=60 * k) for k in range(10)]
    old_dead = [_run(store, f"old{k}", dead, age_s=3600 * (k + 2)) for k in range(5)]
    old_live = _run(store, "old-live", sleeper, age_s=5 * 3600)
    foreign_recent = _run(store, "foreign-recent", 7, age_s=3 * 3600, host="elsewhere")
    foreign_old = _run(store, "foreign-old", 7, age_s=3 * DAY, host="elsewhere")
    no_owner_old = _run(store, "no-owner-old", None, age_s=3 * DAY)
    removed = {Path(p).name for p in prune_runs(str(store), keep=10)}
    assert removed == {p.name for p in old_dead} | {foreign_old.name, no_owner_old.name}
    assert all(p.exists() for p in [*newest, old_live, foreign_recent])


def test_start_run_writes_its_owner_and_is_never_pruned_while_alive(tmp_path):
    store = tmp_path / "store"
    url = start_run(str(store), "r1")
    owner = json.loads((Path(url) / OWNER_FILE).read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == fsio.host_name()
    _age(Path(url), 30 * DAY)
    assert prune_runs(str(store), keep=0) == [] and Path(url).exists()
