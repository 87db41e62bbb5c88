"""Named, seeded train/test splits of a dataset snapshot.

Pure functions return a boolean *test mask* over a snapshot's rating rows:

- ``random_mask``: exactly ``round(f·n)`` rows (round half up), chosen by
  ``default_rng(seed).permutation(n)``.
- ``temporal_mask``: rows with ``timestamp ≥ cutoff``; or the last ``round(f·n)`` rows by
  (timestamp, user, item); or, ``per_user``, each user's last ``min(round(f·n_u), n_u − 1)``
  rows by (timestamp, item) — every user keeps at least one train rating.
- ``user_holdout_mask``: ``k`` rows of every user with more than ``k`` ratings, the latest
  (by time, ties by item) or a seeded random ``k``; users with ≤ k ratings stay in train.

``given`` uses the snapshot's own train/test files (a two-file ingest). Test rows whose user or
item has no train rating are kept and flagged ``cold_user`` / ``cold_item``.
:func:`make_split` writes ``SNAPSHOT/splits/SPLIT/`` atomically; the SPLIT id is derived from
the kind and its parameters, so the same request reuses the same folder.
"""

from __future__ import annotations

import datetime as _dt
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from factorflow.errors import NotFoundError, ParameterError, check_param
from factorflow.progress import Progress, report
from factorflow.storage.checksums import checksums
from factorflow.storage.fs import atomic_dir, join, open_store, read_json, url_of, write_json
from factorflow.storage.layout import split_dir

if TYPE_CHECKING:
    import pyarrow as pa
    import scipy.sparse as sp

    from factorflow.storage.datasets import SnapshotRef

KINDS = ("random", "temporal", "user-holdout", "given")
RATING_COLUMNS = ("user_idx", "item_idx", "rating", "timestamp")


@dataclass
class SplitRef:
    """A written split: its folder (path or URL), its id and its manifest."""

    path: str
    split: str
    manifest: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "split": self.split, "manifest": self.manifest, "reused": self.reused}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitRef:
        return cls(d["path"], d["split"], dict(d.get("manifest") or {}), bool(d.get("reused", False)))


# ---------------------------------------------------------------- pure masks


def _round_half_up(x: float | np.ndarray) -> Any:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def random_mask(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """Test mask with exactly ``round(test_fraction·n)`` rows, chosen by a seeded permutation."""
    n_test = int(_round_half_up(test_fraction * n))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:n_test]] = True
    return mask


def _snapshot_sorted(users: np.ndarray, items: np.ndarray) -> bool:
    """Rows sorted by (user, item), as a snapshot's ratings are."""
    return users.size < 2 or bool(np.all(np.diff(users) >= 0) and _items_sorted_within(users, items))


def _order_user_time_item(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Row order by (user, timestamp, item). Fast path: one stable int64 sort on
    ``user·span + (t − t_min)`` when the rows are in snapshot order (ties keep item order)."""
    if users.size and _snapshot_sorted(users, items):
        t = timestamps.astype(np.int64)
        t0 = int(t.min())
        span = int(t.max()) - t0 + 1
        if (int(users.max()) + 1) * span < 2**62:
            return np.argsort(users.astype(np.int64) * span + (t - t0), kind="stable")
    return np.lexsort((items, timestamps, users))


def _rank_within_user(users: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows visited in ``order`` (grouped by user): position within the user, user degree."""
    u = users[order]
    counts = np.bincount(u)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(u.size) - starts[u]
    return rank, counts[u]


def temporal_mask(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    *,
    cutoff: int | None = None,
    test_fraction: float | None = None,
    per_user: bool = False,
) -> np.ndarray:
    """Test = ``timestamp ≥ cutoff``, or the last fraction by time (globally or per user)."""
    n = users.size
    if cutoff is not None:
        return np.asarray(timestamps) >= cutoff
    assert test_fraction is not None
    mask = np.zeros(n, dtype=bool)
    if per_user:
        order = _order_user_time_item(users, items, timestamps)
        rank, deg = _rank_within_user(users, order)
        n_test = np.minimum(_round_half_up(test_fraction * deg), deg - 1)
        mask[order] = rank >= deg - n_test
        return mask
    n_test = int(_round_half_up(test_fraction * n))
    if _snapshot_sorted(users, items):  # by time, ties by user then item
        order = np.argsort(timestamps, kind="stable")
    else:
        order = np.lexsort((items, users, timestamps))
    mask[order[n - n_test :]] = True
    return mask


def user_holdout_mask(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    k: int,
    by: str = "time",
    seed: int = 42,
) -> np.ndarray:
    """Test = ``k`` ratings of each user with more than ``k`` (latest by time, or seeded random)."""
    if by == "time":
        order = _order_user_time_item(users, items, timestamps)
    else:  # by user, then a seeded random 32-bit key (ties: row order)
        keys = np.random.default_rng(seed).integers(0, 2**32, size=users.size, dtype=np.int64)
        order = np.argsort((users.astype(np.int64) << 32) | keys, kind="stable")
    rank, deg = _rank_within_user(users, order)
    mask = np.zeros(users.size, dtype=bool)
    mask[order] = (deg > k) & (rank >= deg - k)
    return mask


def cold_flags(
    train_users: np.ndarray,
    train_items: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    n_users: int,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(cold_user, cold_item)`` for each test row: its user / item has no train rating."""
    has_user = np.bincount(train_users, minlength=n_users) > 0
    has_item = np.bincount(train_items, minlength=n_items) > 0
    return ~has_user[test_users], ~has_item[test_items]


# ---------------------------------------------------------------- ids and validation


def _fmt(f: float) -> str:
    """Shortest text that round-trips the float, so two different fractions never share an id."""
    return repr(float(f))


def _check_not_empty(sid: str, kind: str, n_train: int, n_test: int, cutoff: int | None) -> None:
    """A split with no train or no test rows cannot train or evaluate anything: say which knob to turn."""
    if n_train and n_test:
        return
    part = "test" if not n_test else "train"
    knob = ("--cutoff" if cutoff is not None else "--test-fraction") if kind == "temporal" else {
        "random": "--test-fraction", "user-holdout": "-k", "given": "--test-source"}[kind]
    raise ParameterError(f"split {sid}: its {part} part would be empty ({n_train} train, {n_test} test rows); "
                         f"change {knob}")


def split_id(
    kind: str,
    *,
    test_fraction: float = 0.2,
    seed: int = 42,
    cutoff: int | None = None,
    per_user: bool = False,
    k: int = 1,
    by: str = "time",
) -> str:
    """The folder name for a split request, e.g. ``random-f0.2-s42``; validates the parameters."""
    check_param(kind in KINDS, "kind", kind, f"one of {', '.join(KINDS)}")
    if kind in ("random", "temporal") and cutoff is None:
        check_param(
            isinstance(test_fraction, (int, float)) and 0.0 < test_fraction < 1.0,
            "test_fraction", test_fraction, "a number in (0, 1)",
        )  # fmt: skip
    if kind in ("random",) or (kind == "user-holdout" and by == "random"):
        check_param(isinstance(seed, int) and seed >= 0, "seed", seed, "an integer ≥ 0")
    if kind == "random":
        return f"random-f{_fmt(test_fraction)}-s{seed}"
    if kind == "temporal":
        if cutoff is not None:
            check_param(isinstance(cutoff, (int, np.integer)), "cutoff", cutoff, "an integer timestamp")
            if per_user:
                raise ParameterError(
                    f"per_user=True with cutoff={cutoff}: a cutoff is global; drop --per-user "
                    "or use --test-fraction instead of --cutoff"
                )
            return f"temporal-cut{int(cutoff)}"
        return f"temporal-{'user-' if per_user else ''}f{_fmt(test_fraction)}"
    if kind == "user-holdout":
        check_param(isinstance(k, int) and k >= 1, "k", k, "an integer ≥ 1")
        check_param(by in ("time", "random"), "by", by, "'time' or 'random'")
        return f"userholdout-k{k}-time" if by == "time" else f"userholdout-k{k}-random-s{seed}"
    return "given"


# ---------------------------------------------------------------- reading and writing


def _read_parquet(fs: Any, path: str, columns: tuple[str, ...] | None = None,
                  files: dict[str, Any] | None = None) -> pa.Table:
    """Read a Parquet file after checking it against its manifest's ``files`` entry."""
    from factorflow.storage import parquet as pqio
    from factorflow.storage.checksums import verify

    verify(fs, path, files)
    return pqio.read_table(fs, path, columns)


def _num_rows(fs: Any, path: str) -> int:
    from factorflow.storage import parquet as pqio

    return pqio.num_rows(fs, path)


def load_split(path: str) -> SplitRef:
    """The split written at ``path`` (local path or fsspec URL)."""
    fs, p = open_store(path)
    mpath = join(p, "manifest.json")
    if not fs.exists(mpath):
        raise NotFoundError(f"{path}: no split here (manifest.json missing); run `factorflow split`")
    manifest = read_json(fs, mpath)
    return SplitRef(path=url_of(fs, p), split=manifest.get("split", posixpath.basename(p)), manifest=manifest)


def resolve_split(snapshot: SnapshotRef, split: str) -> SplitRef:
    """The split ``split`` of ``snapshot``; ``NotFoundError`` lists the splits that exist."""
    fs, snap_path, _ = _snapshot_location(snapshot)
    path = split_dir(snap_path, split)
    if not fs.exists(join(path, "manifest.json")):
        root = join(snap_path, "splits")
        have = sorted(
            posixpath.basename(str(p).rstrip("/"))
            for p in (fs.ls(root, detail=False) if fs.exists(root) else [])
            if not posixpath.basename(str(p).rstrip("/")).startswith(".")
        )
        raise NotFoundError(
            f"split {split!r} not found in snapshot {snap_path}; splits there: "
            f"{', '.join(have) or 'none'} (make one with `factorflow split`)"
        )
    return load_split(url_of(fs, path))


def read_train(ref: SplitRef) -> pa.Table:
    """Train rows: ``user_idx int32, item_idx int32, rating float32, timestamp int64``."""
    fs, p = open_store(ref.path)
    return _read_parquet(fs, join(p, "train.parquet"), files=ref.manifest.get("files"))


def read_test(ref: SplitRef) -> pa.Table:
    """Test rows: the train schema plus ``cold_user bool, cold_item bool``."""
    fs, p = open_store(ref.path)
    return _read_parquet(fs, join(p, "test.parquet"), files=ref.manifest.get("files"))


def train_csr(ref: SplitRef) -> sp.csr_matrix:
    """Train ratings as an ``n_users × n_items`` CSR over the snapshot's full id space."""

    t = read_train(ref)
    u = t.column("user_idx").to_numpy().astype(np.int32, copy=False)
    i = t.column("item_idx").to_numpy().astype(np.int32, copy=False)
    r = t.column("rating").to_numpy().astype(np.float32, copy=False)
    return csr_from_triples(u, i, r, int(ref.manifest["n_users"]), int(ref.manifest["n_items"]))


def csr_from_triples(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """CSR (float32 data, int32 indices, sorted column indices) of unique (user, item) triples."""
    import scipy.sparse as sp

    if not _snapshot_sorted(users, items):
        order = np.lexsort((items, users))
        users, items, ratings = users[order], items[order], ratings[order]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    idx_dtype = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    m = sp.csr_matrix(
        (ratings.astype(np.float32), items.astype(np.int32), indptr.astype(idx_dtype)),
        shape=(n_users, n_items),
    )
    m.has_sorted_indices = True
    return m


def _items_sorted_within(users: np.ndarray, items: np.ndarray) -> bool:
    same = users[1:] == users[:-1]
    return bool(np.all(items[1:][same] > items[:-1][same]))


def _snapshot_location(snapshot: SnapshotRef) -> tuple[Any, str, dict[str, Any]]:
    """``(fs, folder, manifest)`` of a snapshot (its ``path`` is relative to ``store``'s fs)."""
    store = getattr(snapshot, "store", None)
    if store is not None and "://" not in str(snapshot.path):
        fs, _ = open_store(store)
        path = str(snapshot.path).rstrip("/")
    else:
        fs, path = open_store(snapshot.path)
    manifest = getattr(snapshot, "manifest", None)
    if not manifest:
        mpath = join(path, "manifest.json")
        if not fs.exists(mpath):
            raise NotFoundError(f"{snapshot.path}: no snapshot here (manifest.json missing)")
        manifest = read_json(fs, mpath)
    return fs, path, manifest


def make_split(
    snapshot: SnapshotRef,
    kind: str,
    *,
    test_fraction: float = 0.2,
    seed: int = 42,
    cutoff: int | None = None,
    per_user: bool = False,
    k: int = 1,
    by: str = "time",
    progress: Progress | None = None,
) -> SplitRef:
    """Write (or reuse) ``SNAPSHOT/splits/SPLIT/``: train.parquet, test.parquet, manifest.json."""
    import pyarrow as pa

    sid = split_id(
        kind, test_fraction=test_fraction, seed=seed, cutoff=cutoff, per_user=per_user, k=k, by=by
    )
    fs, snap_path, snap_manifest = _snapshot_location(snapshot)
    final = split_dir(snap_path, sid)
    final_url = url_of(fs, final)
    if fs.exists(join(final, "manifest.json")):
        ref = load_split(final_url)
        ref.reused = True
        return ref

    steps = 4
    report(progress, 0, steps, "reading ratings")
    n_users = snap_manifest.get("n_users") or _num_rows(fs, join(snap_path, "users.parquet"))
    n_items = snap_manifest.get("n_items") or _num_rows(fs, join(snap_path, "items.parquet"))
    files = snap_manifest.get("files")
    ratings = _read_parquet(fs, join(snap_path, "ratings.parquet"), RATING_COLUMNS, files)
    if kind == "given":
        if not fs.exists(join(snap_path, "given_test.parquet")):
            raise ParameterError(
                f"kind='given': snapshot {snap_path} has no given_test.parquet; ingest the train "
                "file with --test-source TEST to make one, or choose another --kind"
            )
        train = ratings
        test = _read_parquet(fs, join(snap_path, "given_test.parquet"), RATING_COLUMNS, files)
    else:
        u = ratings.column("user_idx").to_numpy()
        i = ratings.column("item_idx").to_numpy()
        ts = ratings.column("timestamp").to_numpy()
        report(progress, 1, steps, "splitting")
        if kind == "random":
            mask = random_mask(u.size, test_fraction, seed)
        elif kind == "temporal":
            mask = temporal_mask(u, i, ts, cutoff=cutoff, test_fraction=test_fraction, per_user=per_user)
        else:
            mask = user_holdout_mask(u, i, ts, k, by, seed)
        train = ratings.filter(pa.array(~mask))
        test = ratings.filter(pa.array(mask))
    _check_not_empty(sid, kind, train.num_rows, test.num_rows, cutoff)
    report(progress, 2, steps, "flagging cold-start rows")
    cold_user, cold_item = cold_flags(
        train.column("user_idx").to_numpy(), train.column("item_idx").to_numpy(),
        test.column("user_idx").to_numpy(), test.column("item_idx").to_numpy(), n_users, n_items,
    )  # fmt: skip
    test = test.append_column("cold_user", pa.array(cold_user)).append_column(
        "cold_item", pa.array(cold_item)
    )
    uses_seed = kind == "random" or (kind == "user-holdout" and by == "random")
    params: dict[str, Any] = {
        "random": {"test_fraction": test_fraction},
        "temporal": {"cutoff": cutoff} if cutoff is not None
        else {"test_fraction": test_fraction, "per_user": per_user},
        "user-holdout": {"k": k, "by": by},
        "given": {},
    }[kind]
    manifest = {
        "split": sid,
        "kind": kind,
        "params": params,
        "seed": seed if uses_seed else None,
        "n_users": n_users,
        "n_items": n_items,
        "n_train": train.num_rows,
        "n_test": test.num_rows,
        "n_test_cold_user": int(cold_user.sum()),
        "n_test_cold_item": int(cold_item.sum()),
        "n_test_cold": int((cold_user | cold_item).sum()),
        "snapshot": getattr(snapshot, "snapshot", None) or posixpath.basename(snap_path),
        "dataset": getattr(snapshot, "name", None) or posixpath.basename(posixpath.dirname(snap_path)),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    report(progress, 3, steps, "writing")
    try:
        with atomic_dir(fs, final) as tmp:
            _write_parquet(fs, join(tmp, "train.parquet"), train)
            _write_parquet(fs, join(tmp, "test.parquet"), test)
            manifest["files"] = checksums(fs, tmp)
            write_json(fs, join(tmp, "manifest.json"), manifest)
    except FileExistsError:  # a concurrent writer published the same split first
        ref = load_split(final_url)
        ref.reused = True
        return ref
    report(progress, steps, steps, sid)
    return SplitRef(path=final_url, split=sid, manifest=manifest, reused=False)


def _write_parquet(fs: Any, path: str, table: pa.Table) -> None:
    from factorflow.storage import parquet as pqio

    pqio.write_table(fs, path, table, row_group_size=1 << 20)
