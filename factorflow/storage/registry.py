"""Publish versioned factor models and read them back: one path for every factor model.

``publish`` writes ``STORE/models/NAME/versions/VERSION/`` into a temporary sibling folder
(:func:`factorflow.storage.fs.atomic_dir`) and renames it into place; only then does it
replace ``STORE/models/NAME/CURRENT`` (one line: the version) atomically. A crash at any
point before that switch leaves the previous version published and readable; a killed
writer leaves at most a ``.tmp-*`` folder, which :func:`list_versions` never reports.

A version folder holds (see :mod:`factorflow.storage.tables` for the table schemas)::

    user_factors.parquet  item_factors.parquet  [seen.parquet]  [EXTRA.parquet ...]  model.json

VERSION is ``YYYYMMDDTHHMMSSffffffZ-xxxxxx`` (UTC creation time + random hex), so names sort
by time. ``model.json`` is the caller's ``model_json`` (the body built by
:mod:`factorflow.pipeline.publish`) plus ``version, name, created_at, rank, global_mean,
n_users, n_items, tables, files``. Keys other tools read, kept stable:

- ``kind`` (model kind, e.g. ``"als"``), ``params`` (the kind's config fields; fold-in rebuilds
  the model from ``kind`` and ``params``)
- ``metrics.test.rmse``, ``metrics.test.mae``, ``metrics.test["ndcg@10"]``,
  ``metrics.test["precision@10"]``, ``metrics.test["recall@10"]``, ``metrics.train.rmse``
- ``metrics.baselines.<kind>.rmse`` (the baseline kinds: ``global-mean``, ``bias``)

``model_json`` must be strict JSON (no NaN/inf; numpy scalars/arrays are converted); it is
checked before anything is written.

**CURRENT's history** (``STORE/models/NAME/history.json``, :func:`read_history`): every switch of
CURRENT appends an entry ``{version, action, at, reason}`` (``action``: ``publish``, ``promote``,
``rollback`` or ``set-current``). The file is rewritten whole through
:func:`factorflow.storage.fs.atomic_write_text` (no appends: it works the same on object stores),
after CURRENT itself, so CURRENT is the truth: when the history's top is not CURRENT (a crash
between the two writes, a hand edit, a store from before the history), a ``set-current`` entry
for what CURRENT named is added first. Read as a stack, publish/promote/set-current push and
rollback pops: :func:`rollback` returns to the previous CURRENT, a second rollback one further
back (versions deleted since are skipped). Concurrent switches are last-writer-wins for CURRENT,
and an entry of the loser may be lost from the history.

**Retention** (:func:`prune_versions`): keep the newest K complete versions, plus CURRENT and
the rollback target whatever their age. A version is deleted by first making it incomplete to
every reader (local: renamed to a ``.tmp-`` sibling, which the stale-temporary sweep removes if
the deleter dies; remote: its ``model.json`` removed first), then removing its files.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from fsspec import AbstractFileSystem

from factorflow.errors import InputError, NotFoundError, ParameterError
from factorflow.factors import FactorArrays
from factorflow.storage import fs as fsio
from factorflow.storage import parquet as pqio
from factorflow.storage import tables as ft
from factorflow.storage.checksums import checksums, verify
from factorflow.storage.layout import (
    current_file,
    history_file,
    model_dir,
    models_dir,
    version_dir,
    versions_dir,
)

USER_TABLE = "user_factors.parquet"
ITEM_TABLE = "item_factors.parquet"
SEEN_TABLE = "seen.parquet"
MODEL_JSON = "model.json"
REQUIRED = (USER_TABLE, ITEM_TABLE, MODEL_JSON)

_VERSION_RE = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6,}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TABLE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def new_version(now: datetime | None = None) -> str:
    """A fresh, time-sortable version name: ``YYYYMMDDTHHMMSSffffffZ-xxxxxx``."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def publish(
    store: str,
    name: str,
    factors: FactorArrays,
    user_ids: pa.Array,
    item_ids: pa.Array,
    model_json: dict[str, Any],
    *,
    seen: sp.csr_matrix | None = None,
    item_titles: pa.Array | None = None,
    extra_tables: dict[str, pa.Table] | None = None,
    extra_files: dict[str, bytes] | None = None,
    set_current: bool = True,
    reason: str | None = None,
) -> str:
    """Write a complete model version, then (if ``set_current``) point CURRENT at it; return it.

    ``user_ids[i]`` / ``item_ids[j]`` are the raw ids of dense index i / j; ``seen`` is the
    users×items train matrix (its pattern gives ``n_ratings`` and ``seen.parquet``);
    ``extra_files`` are written as they are (e.g. ``network.keras``), checksummed like the tables.
    ``reason`` goes into CURRENT's history entry (action ``publish``) when CURRENT switches.
    """
    check_name(name)
    users = ft.normalize_ids(user_ids, "user_ids")
    items = ft.normalize_ids(item_ids, "item_ids")
    _check_shapes(factors, users, items, seen, item_titles)
    extra = _check_extra(extra_tables or {})
    files = _check_files(extra_files or {}, extra)
    body = _check_json(model_json)

    fs, root = fsio.open_store(store)
    version = new_version()
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    meta = dict(body)
    meta.update(
        version=version, name=name, created_at=created, rank=factors.rank,
        global_mean=float(factors.global_mean), n_users=factors.n_users, n_items=factors.n_items,
        tables=sorted([USER_TABLE, ITEM_TABLE] + ([SEEN_TABLE] if seen is not None else [])
                      + [f"{t}.parquet" for t in extra]),
    )
    n_user = n_item = None
    if seen is not None:
        pattern = sp.csr_matrix(seen)
        n_user = np.diff(pattern.indptr).astype(np.int32)
        n_item = np.bincount(pattern.indices, minlength=factors.n_items).astype(np.int32)

    with fsio.atomic_dir(fs, version_dir(root, name, version)) as tmp:
        pqio.write_table(fs, fsio.join(tmp, USER_TABLE), ft.factor_table(
            "user", users, factors.user_bias, factors.user_factors, n_user))
        pqio.write_table(fs, fsio.join(tmp, ITEM_TABLE), ft.factor_table(
            "item", items, factors.item_bias, factors.item_factors, n_item, item_titles))
        if seen is not None:
            ft.write_seen(fs, fsio.join(tmp, SEEN_TABLE), seen)
        for tname, table in extra.items():
            pqio.write_table(fs, fsio.join(tmp, f"{tname}.parquet"), table)
        for fname, data in files.items():
            with fs.open(fsio.join(tmp, fname), "wb") as f:
                f.write(data)
        meta["files"] = checksums(fs, tmp)
        fsio.write_json(fs, fsio.join(tmp, MODEL_JSON), meta)  # last: marks the folder complete
    if set_current:
        _switch_current(fs, root, name, version, "publish", reason)
    return version


HISTORY_ACTIONS = ("publish", "promote", "rollback", "set-current")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _switch_current(fs: AbstractFileSystem, root: str, name: str, version: str, action: str = "set-current",
                    reason: str | None = None) -> None:
    """Replace CURRENT (atomically), then record the switch in the history (see the module docstring)."""
    previous = _read_current(fs, root, name)
    fsio.atomic_write_text(fs, current_file(root, name), version + "\n")
    if previous == version:
        return  # nothing changed: no history entry
    entries = _read_entries(fs, root, name)
    stack = _stack(entries)
    if previous is not None and (not stack or stack[-1] != previous):
        entries.append({"version": previous, "action": "set-current", "at": _now(),
                        "reason": "found as CURRENT (switched outside this history, or before it was kept)"})
    entries.append({"version": version, "action": action, "at": _now(), "reason": reason})
    fsio.atomic_write_text(fs, history_file(root, name), json.dumps(
        {"model": name, "entries": entries}, indent=2, sort_keys=True) + "\n")


def _read_current(fs: AbstractFileSystem, root: str, name: str) -> str | None:
    path = current_file(root, name)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return f.read().strip() or None


def _read_entries(fs: AbstractFileSystem, root: str, name: str) -> list[dict[str, Any]]:
    path = history_file(root, name)
    if not fs.exists(path):
        return []
    try:
        doc = fsio.read_json(fs, path)
        entries = doc["entries"]
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("version"), str) and e.get("action") in HISTORY_ACTIONS
                for e in entries):
            raise ValueError("entries must be a list of {version, action, at, reason}")
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a CURRENT history file ({exc}); move it away to start a new history") from None
    return entries


def _stack(entries: list[dict[str, Any]]) -> list[str]:
    """CURRENT's stack replayed from the history: publish/promote/set-current push, rollback pops
    down to the version it returned to."""
    stack: list[str] = []
    for e in entries:
        if e["action"] == "rollback":
            while stack and stack[-1] != e["version"]:
                stack.pop()
            if not stack:
                stack.append(e["version"])
        else:
            stack.append(e["version"])
    return stack


def read_history(store: str, name: str) -> list[dict[str, Any]]:
    """CURRENT's history of model ``name``, oldest first: ``[{version, action, at, reason}]``
    (empty for a model published before the history was kept, or never made CURRENT)."""
    check_name(name)
    fs, root = fsio.open_store(store)
    return _read_entries(fs, root, name)


def _rollback_stack(fs: AbstractFileSystem, root: str, name: str, current: str) -> tuple[list[str], list[str]]:
    """(the versions below CURRENT on the stack, oldest first, ending at the rollback target; the
    versions skipped on the way because they were deleted or are CURRENT again)."""
    stack = _stack(_read_entries(fs, root, name))
    if stack and stack[-1] == current:
        stack.pop()
    skipped = []
    while stack and (stack[-1] == current or not _is_complete(fs, version_dir(root, name, stack[-1]))):
        skipped.append(stack.pop())
    return stack, skipped


def rollback_target(store: str, name: str) -> str | None:
    """The version :func:`rollback` would make CURRENT (None when there is none)."""
    check_name(name)
    fs, root = fsio.open_store(store)
    current = _read_current(fs, root, name)
    if current is None:
        return None
    stack, _ = _rollback_stack(fs, root, name, current)
    return stack[-1] if stack else None


def rollback(store: str, name: str, reason: str | None = None) -> tuple[str, str]:
    """Point CURRENT back at the previous CURRENT (history as a stack; a second rollback goes one
    further back; deleted versions are skipped); returns (the version left, the version now CURRENT).
    NotFoundError in one line when there is nothing to roll back to."""
    current = current_version(store, name)
    fs, root = fsio.open_store(store)
    stack, skipped = _rollback_stack(fs, root, name, current)
    if not stack:
        gone = f" (the earlier ones were deleted: {', '.join(skipped)})" if skipped else ""
        raise NotFoundError(f"model {name}: nothing to roll back to: CURRENT {current} has no earlier CURRENT in "
                            f"{history_file(root, name)}{gone}; make a version CURRENT with "
                            f"`factorflow models promote VERSION --model {name}`")
    target = stack[-1]
    note = f"rolled back from {current}" + (f", skipping deleted {', '.join(skipped)}" if skipped else "")
    _switch_current(fs, root, name, target, "rollback", f"{reason}; {note}" if reason else note)
    return current, target


def promote(store: str, name: str, version: str, *, force: bool = False, reason: str | None = None) -> bool:
    """Make ``version`` CURRENT (history action ``promote``); a rejected version needs ``force``.
    Returns False when it already was CURRENT (nothing changes)."""
    return _set(store, name, version, force, "promote", reason)


def prune_versions(store: str, name: str, keep: int) -> list[str]:
    """Delete the complete versions of ``name`` older than the newest ``keep``, never CURRENT nor
    its rollback target; returns the deleted versions, oldest first."""
    check_name(name)
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ParameterError(f"keep={keep!r}: must be an integer >= 1")
    fs, root = fsio.open_store(store)
    versions = _complete_versions(fs, root, name)
    current = _read_current(fs, root, name)
    protected = {current, rollback_target(store, name)} if current else set()
    newest = set(versions[-int(keep):])
    doomed = [v for v in versions if v not in newest and v not in protected]
    for v in doomed:
        _remove_version(fs, root, name, v)
    return doomed


def _remove_version(fs: AbstractFileSystem, root: str, name: str, version: str) -> None:
    """Delete one version folder so that no reader ever sees it complete while it goes."""
    path = version_dir(root, name, version)
    if fsio.is_local(fs):
        tmp = fsio.join(versions_dir(root, name), fsio.temporary_name(version))
        os.rename(path, tmp)  # atomic: gone from every listing at once
        fs.rm(tmp, recursive=True)
    else:
        fs.rm(fsio.join(path, MODEL_JSON))  # incomplete from here on: list/load skip it
        fs.rm(path, recursive=True)


def check_name(name: str, param: str = "name") -> None:
    """ParameterError unless ``name`` is a safe model name (one path segment: no '/', no '..')."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > 200:
        raise ParameterError(f"{param}={name!r}: must be letters, digits, '.', '_' or '-' "
                             "(starting with a letter or digit, at most 200 characters)")


def _check_shapes(f: FactorArrays, users: pa.Array, items: pa.Array,
                  seen: sp.spmatrix | None, titles: pa.Array | None) -> None:
    n_u, n_i = f.n_users, f.n_items
    checks = [
        ("user_ids", len(users), n_u), ("item_ids", len(items), n_i),
        ("factors.user_bias", len(f.user_bias), n_u), ("factors.item_bias", len(f.item_bias), n_i),
        ("factors.item_factors rank", f.item_factors.shape[1], f.rank),
    ]
    if titles is not None:
        checks.append(("item_titles", len(titles), n_i))
    for what, got, want in checks:
        if got != want:
            raise ParameterError(f"{what}: length {got} does not match the model ({want})")
    if seen is not None and tuple(seen.shape) != (n_u, n_i):
        raise ParameterError(f"seen: shape {tuple(seen.shape)} is not (n_users, n_items) = {(n_u, n_i)}")
    if not math.isfinite(float(f.global_mean)):
        raise ParameterError(f"factors.global_mean={f.global_mean!r}: must be finite")
    if len(pc.unique(users)) != n_u or len(pc.unique(items)) != n_i:
        raise ParameterError("user_ids/item_ids: raw ids must be unique (one per dense index)")


def _check_extra(extra: dict[str, pa.Table]) -> dict[str, pa.Table]:
    out = {}
    reserved = {t.removesuffix(".parquet") for t in (USER_TABLE, ITEM_TABLE, SEEN_TABLE)}
    for key, table in extra.items():
        stem = key.removesuffix(".parquet")
        if not _TABLE_RE.match(stem) or stem in reserved:
            raise ParameterError(f"extra_tables: name {key!r} must be lowercase letters, digits, "
                                 f"'_' or '-' and not one of {sorted(reserved)}")
        if not isinstance(table, pa.Table):
            raise ParameterError(f"extra_tables[{key!r}]: must be a pyarrow.Table, got {type(table).__name__}")
        out[stem] = table
    return out


def _check_files(files: dict[str, bytes], tables: dict[str, pa.Table]) -> dict[str, bytes]:
    """Extra files of a version: plain names (``network.keras``) that no table or model.json uses."""
    taken = {USER_TABLE, ITEM_TABLE, SEEN_TABLE, MODEL_JSON} | {f"{t}.parquet" for t in tables}
    for fname, data in files.items():
        if not (isinstance(fname, str) and _FILE_RE.match(fname)) or fname in taken:
            raise ParameterError(f"extra_files: {fname!r} is not a usable file name (a plain name like "
                                 "'network.keras', not a table's)")
        if not isinstance(data, bytes | bytearray):
            raise ParameterError(f"extra_files: {fname!r} must be bytes, not {type(data).__name__}")
    return files


def _check_json(model_json: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through strict JSON so nothing unserializable is found after writing starts."""
    if not isinstance(model_json, dict):
        raise ParameterError(f"model_json: must be a dict, got {type(model_json).__name__}")
    try:
        text = json.dumps(model_json, default=fsio._json_default, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"model_json: not strict JSON ({exc}); "
                             f"{_first_bad(model_json) or 'convert it to plain types'}") from exc
    return json.loads(text)


def _first_bad(obj: Any, path: str = "model_json") -> str | None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                return f"{path} has a non-string key {k!r}"
            bad = _first_bad(v, f"{path}[{k!r}]")
            if bad:
                return bad
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad = _first_bad(v, f"{path}[{i}]")
            if bad:
                return bad
    elif isinstance(obj, (float, np.floating)) and not math.isfinite(float(obj)):
        return f"{path} is {obj!r}"
    elif not isinstance(obj, (str, int, float, bool, type(None), np.generic, np.ndarray)):
        return f"{path} is a {type(obj).__name__}"
    return None


# --- reading -------------------------------------------------------------------------------


def list_models(store: str) -> list[str]:
    """Names of the models with a CURRENT file or at least one version."""
    fs, root = fsio.open_store(store)
    base = models_dir(root)
    if not fs.isdir(base):
        return []
    names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(base, detail=False)]
    return sorted(n for n in names if _NAME_RE.match(n) and fs.isdir(model_dir(root, n)))


def list_versions(store: str, name: str) -> list[str]:
    """Complete versions of model ``name``, oldest first (temp folders never appear)."""
    fs, root = fsio.open_store(store)
    return _complete_versions(fs, root, name)


def _complete_versions(fs: AbstractFileSystem, root: str, name: str) -> list[str]:
    base = versions_dir(root, name)
    if not fs.isdir(base):
        return []
    out = []
    for p in fs.ls(base, detail=False):
        v = posixpath.basename(p.rstrip("/"))
        if _VERSION_RE.match(v) and _is_complete(fs, fsio.join(base, v)):
            out.append(v)
    return sorted(out)


def _is_complete(fs: AbstractFileSystem, path: str) -> bool:
    return all(fs.exists(fsio.join(path, f)) for f in REQUIRED)


def _missing_model(store: str, name: str) -> NotFoundError:
    try:
        names = list_models(store)
    except Exception:  # noqa: BLE001 - the hint must not hide the real error
        names = []
    have = f" (models there: {', '.join(names)})" if names else " (the store has no models yet)"
    return NotFoundError(f"no published model {name!r} in {store}; run `factorflow retrain SOURCE "
                         f"--store {store} --name {name}` to publish one{have}")


def named_current(store: str, name: str) -> str | None:
    """What CURRENT names, unchecked (None when the model has no CURRENT file)."""
    check_name(name)
    fs, root = fsio.open_store(store)
    return _read_current(fs, root, name)


def current_version(store: str, name: str) -> str:
    """The version CURRENT names (NotFoundError with a hint when there is none)."""
    check_name(name)
    fs, root = fsio.open_store(store)
    path = current_file(root, name)
    if not fs.exists(path):
        raise _missing_model(store, name)
    with fs.open(path, "r") as f:
        version = f.read().strip()
    if not _VERSION_RE.match(version) or not _is_complete(fs, version_dir(root, name, version)):
        raise NotFoundError(f"{path}: names version {version!r}, which is missing or incomplete; "
                            f"roll back with `factorflow models {name} --set-current VERSION`")
    return version


def set_current(store: str, name: str, version: str, *, force: bool = False) -> None:
    """Point CURRENT at an existing, complete ``version`` (rollback or roll forward; history action
    ``set-current``).

    A version the publish gate rejected (``model.json`` ``status: rejected``) needs ``force``.
    """
    _set(store, name, version, force, "set-current", None)


def _set(store: str, name: str, version: str, force: bool, action: str, reason: str | None) -> bool:
    check_name(name)
    fs, root = fsio.open_store(store)
    if not (isinstance(version, str) and _VERSION_RE.match(version)
            and _is_complete(fs, version_dir(root, name, version))):
        have = _complete_versions(fs, root, name)
        if not have:
            raise _missing_model(store, name)
        raise NotFoundError(f"version={version!r}: not a complete version of model {name!r} "
                            f"(versions: {', '.join(have)})")
    meta = fsio.read_json(fs, fsio.join(version_dir(root, name, version), MODEL_JSON))
    if meta.get("status") == "rejected" and not force:
        why = "; ".join(meta.get("rejected_because") or []) or "no reason recorded"
        raise ParameterError(f"version={version}: the publish gate rejected it ({why}); "
                             "pass --force to make it CURRENT anyway")
    if _read_current(fs, root, name) == version:
        return False
    _switch_current(fs, root, name, version, action, reason)
    return True


def read_model_json(store: str, name: str, version: str) -> dict[str, Any]:
    """``model.json`` of one version (cheap: no tables are read)."""
    fs, root = fsio.open_store(store)
    path = version_dir(root, name, version)
    if not (_VERSION_RE.match(version) and _is_complete(fs, path)):
        raise NotFoundError(f"version={version!r}: not a complete version of model {name!r}")
    return fsio.read_json(fs, fsio.join(path, MODEL_JSON))


@dataclass
class PublishedModel:
    """A published version read back from its tables (everything in dense index order)."""

    name: str
    version: str
    model_json: dict[str, Any]
    factors: FactorArrays
    user_ids: pa.Array
    item_ids: pa.Array
    item_titles: pa.Array | None
    user_n_ratings: np.ndarray | None
    item_n_ratings: np.ndarray | None
    path: str
    fs: AbstractFileSystem = field(repr=False)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # e.g. serving's loaded network

    @property
    def user_id_is_int(self) -> bool:
        return pa.types.is_integer(self.user_ids.type)

    @property
    def item_id_is_int(self) -> bool:
        return pa.types.is_integer(self.item_ids.type)

    def parse_user_id(self, text: str) -> int | str | None:
        """A CLI string as this model's raw user id type (None if it cannot be one)."""
        return _parse_id(text, self.user_id_is_int)

    def parse_item_id(self, text: str) -> int | str | None:
        return _parse_id(text, self.item_id_is_int)

    def user_index(self, raw_id: int | str | None) -> int | None:
        """Dense index of a raw user id, or None when the model does not know it."""
        return _index_of(self.user_ids, raw_id)

    def item_index(self, raw_id: int | str | None) -> int | None:
        return _index_of(self.item_ids, raw_id)

    def item_indices(self, raw_ids: list[int | str]) -> np.ndarray:
        """Dense indices of many raw item ids (-1 where unknown)."""
        if not raw_ids:
            return np.zeros(0, dtype=np.int64)
        probe = pa.array(raw_ids, type=self.item_ids.type)
        return pc.index_in(probe, value_set=self.item_ids).fill_null(-1).to_numpy().astype(np.int64)

    def seen_items(self, user_idx: int) -> np.ndarray:
        """Train items of one user from ``seen.parquet`` (a filtered read; empty if not published)."""
        path = fsio.join(self.path, SEEN_TABLE)
        if not self.fs.exists(path):
            return np.zeros(0, dtype=np.int32)
        verify(self.fs, path, self.model_json.get("files"), full=False)  # a partial read: size only
        return ft.read_seen_user(self.fs, path, user_idx)

    def seen_matrix(self) -> sp.csr_matrix | None:
        """All train pairs as a CSR of ones, or None when ``seen.parquet`` was not published."""
        path = fsio.join(self.path, SEEN_TABLE)
        if not self.fs.exists(path):
            return None
        verify(self.fs, path, self.model_json.get("files"))
        return ft.read_seen(self.fs, path, (self.factors.n_users, self.factors.n_items))

    def read_file(self, file_name: str) -> bytes:
        """The bytes of a file of this version (e.g. ``network.keras``), checked against model.json's checksums."""
        path = fsio.join(self.path, file_name)
        if not self.fs.exists(path):
            raise NotFoundError(f"{path}: model {self.name} version {self.version} has no {file_name}")
        verify(self.fs, path, self.model_json.get("files"))
        with self.fs.open(path, "rb") as f:
            return f.read()

    def title(self, item_idx: int) -> str | None:
        if self.item_titles is None:
            return None
        return self.item_titles[int(item_idx)].as_py()


def _parse_id(text: str, as_int: bool) -> int | str | None:
    if not as_int:
        return text
    try:
        return int(text.strip())
    except ValueError:
        return None


def _index_of(ids: pa.Array, raw_id: int | str | None) -> int | None:
    if raw_id is None:
        return None
    if pa.types.is_integer(ids.type) and not isinstance(raw_id, (int, np.integer)):
        return None
    if pa.types.is_string(ids.type) and not isinstance(raw_id, str):
        return None
    i = pc.index(ids, pa.scalar(raw_id, type=ids.type)).as_py()
    return None if i < 0 else int(i)


def load_model(store: str, name: str, version: str | None = None) -> PublishedModel:
    """Read the published tables of ``version`` (CURRENT when None); never reads train data."""
    check_name(name)
    fs, root = fsio.open_store(store)
    if version is None:
        version = current_version(store, name)
    path = version_dir(root, name, version)
    if not (_VERSION_RE.match(version) and _is_complete(fs, path)):
        have = _complete_versions(fs, root, name)
        if not have:
            raise _missing_model(store, name)
        raise NotFoundError(f"version={version!r}: not a complete version of model {name!r} "
                            f"(versions: {', '.join(have)})")
    meta = fsio.read_json(fs, fsio.join(path, MODEL_JSON))
    for table in (USER_TABLE, ITEM_TABLE):
        verify(fs, fsio.join(path, table), meta.get("files"))
    users = ft.read_factor_table(fs, fsio.join(path, USER_TABLE), "user")
    items = ft.read_factor_table(fs, fsio.join(path, ITEM_TABLE), "item")
    if users.factors.shape[1] != items.factors.shape[1]:
        raise InputError(f"{path}: user and item factors have different ranks "
                         f"({users.factors.shape[1]} vs {items.factors.shape[1]})")
    factors = FactorArrays(
        user_factors=users.factors, item_factors=items.factors,
        user_bias=users.bias, item_bias=items.bias, global_mean=float(meta["global_mean"]),
    )
    return PublishedModel(
        name=name, version=version, model_json=meta, factors=factors,
        user_ids=users.ids, item_ids=items.ids, item_titles=items.titles,
        user_n_ratings=users.n_ratings, item_n_ratings=items.n_ratings, path=path, fs=fs,
    )
