"""Named, seeded train/test splits of a dataset snapshot.

Pure functions return a boolean *test mask* over a snapshot's rating rows:

- ``random_mask``: exactly ``round(f·n)`` rows (round half up), chosen by
  ``default_rng(seed).permutation(n)``.
- ``temporal_mask``: rows with ``timestamp ≥ cutoff``; or the last ``round(f·n)`` rows by
  (timestamp, user, item); or, ``per_user``, each user's last ``min(round(f·n_u), n_u − 1)``
  rows by (timestamp, item) — every user keeps at least one train rating.
- ``window_masks``: a temporal split with an upper bound (``cutoff`` and ``until``, as a
  backfill evaluates): train = ``timestamp < cutoff``, test = ``cutoff ≤ timestamp < until``;
  rows at or after ``until`` are in neither (the manifest counts them as ``n_excluded``).
  Its id is ``temporal-cut{cutoff}-to{until}``.
- ``user_holdout_mask``: ``k`` rows of every user with more than ``k`` ratings, the latest
  (by time, ties by item) or a seeded random ``k``; users with ≤ k ratings stay in train.

``given`` uses the snapshot's own train/test files (a two-file ingest). Test rows whose user or
item has no train rating are kept and flagged ``cold_user`` / ``cold_item``.
:func:`make_split` reads the snapshot and writes ``SNAPSHOT/splits/SPLIT/`` atomically through
:mod:`factorflow.storage.splits` (which also reads splits back: ``SplitRef``, ``read_train``,
``train_csr``, ...); the SPLIT id is derived from the kind and its parameters, so the same
request reuses the same folder.
"""

from __future__ import annotations

import datetime as _dt
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from factorflow.errors import ParameterError, check_param
from factorflow.progress import Progress, report
from factorflow.sparse import csr_from_triples  # noqa: F401  (part of this module's pure API)
from factorflow.sparse import snapshot_sorted as _snapshot_sorted
from factorflow.storage.splits import (
    find_split,
    open_snapshot,
    read_given_test,
    read_snapshot_ratings,
    snapshot_num_rows,
    snapshot_shape,
    write_split,
)

if TYPE_CHECKING:
    from factorflow.storage.datasets import SnapshotRef
    from factorflow.storage.splits import SplitRef

KINDS = ("random", "temporal", "user-holdout", "given")


# ---------------------------------------------------------------- pure masks


def _round_half_up(x: float | np.ndarray) -> Any:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def random_mask(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """Test mask with exactly ``round(test_fraction·n)`` rows, chosen by a seeded permutation."""
    n_test = int(_round_half_up(test_fraction * n))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:n_test]] = True
    return mask


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


def window_masks(timestamps: np.ndarray, cutoff: int, until: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` masks of a bounded temporal split: train = ``t < cutoff``, test =
    ``cutoff ≤ t < until``. Rows with ``t ≥ until`` are in neither mask. Requires ``cutoff < until``."""
    if not cutoff < until:
        raise ParameterError(f"until={until!r}: must be after cutoff={cutoff!r}")
    t = np.asarray(timestamps)
    train = t < cutoff
    return train, ~train & (t < until)


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


def _column(table: Any, name: str) -> np.ndarray:
    """One column of an Arrow table as a NumPy array (a copy only when the table is chunked)."""
    return table.column(name).to_numpy()


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
    until: int | None = None,
) -> str:
    """The folder name for a split request, e.g. ``random-f0.2-s42``; validates the parameters.

    ``until`` (temporal with a ``cutoff`` only) bounds the test window: ``temporal-cut{c}-to{e}``."""
    check_param(kind in KINDS, "kind", kind, f"one of {', '.join(KINDS)}")
    if until is not None:
        if kind != "temporal" or cutoff is None:
            raise ParameterError(f"until={until!r}: bounds a temporal split's test window; it needs kind='temporal' "
                                 "and a cutoff")
        check_param(isinstance(until, (int, np.integer)) and not isinstance(until, bool), "until", until,
                    "an integer timestamp")
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
            check_param(isinstance(cutoff, (int, np.integer)) and not isinstance(cutoff, bool), "cutoff", cutoff,
                        "an integer timestamp")
            if per_user:
                raise ParameterError(
                    f"per_user=True with cutoff={cutoff}: a cutoff is global; drop --per-user "
                    "or use --test-fraction instead of --cutoff"
                )
            if until is not None:
                check_param(int(until) > int(cutoff), "until", until, f"after cutoff={int(cutoff)}")
                return f"temporal-cut{int(cutoff)}-to{int(until)}"
            return f"temporal-cut{int(cutoff)}"
        return f"temporal-{'user-' if per_user else ''}f{_fmt(test_fraction)}"
    if kind == "user-holdout":
        check_param(isinstance(k, int) and k >= 1, "k", k, "an integer ≥ 1")
        check_param(by in ("time", "random"), "by", by, "'time' or 'random'")
        return f"userholdout-k{k}-time" if by == "time" else f"userholdout-k{k}-random-s{seed}"
    return "given"


# ---------------------------------------------------------------- composing: snapshot → split folder


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
    until: int | None = None,
    progress: Progress | None = None,
) -> SplitRef:
    """Write (or reuse) ``SNAPSHOT/splits/SPLIT/``: train.parquet, test.parquet, manifest.json.

    Reads the snapshot and writes the split folder through :mod:`factorflow.storage.splits`;
    the test rows are chosen by the pure masks above. ``until`` (temporal with a ``cutoff``)
    bounds the test window (:func:`window_masks`); the rows after it are left out of both parts.
    """
    import pyarrow as pa

    sid = split_id(
        kind, test_fraction=test_fraction, seed=seed, cutoff=cutoff, per_user=per_user, k=k, by=by, until=until
    )
    source = open_snapshot(snapshot)
    existing = find_split(source, sid)
    if existing is not None:
        return existing

    steps = 4
    report(progress, 0, steps, "reading ratings")
    n_users, n_items = snapshot_shape(source)
    # the seeded permutation needs only the row count, and NumPy draws it without the GIL: it is
    # drawn while the snapshot is read and verified (the same rows as drawing it afterwards)
    n_rows = snapshot_num_rows(source) if kind == "random" and until is None else None
    drawn = None
    if n_rows is not None:
        with ThreadPoolExecutor(1, thread_name_prefix="split-mask") as pool:
            future = pool.submit(random_mask, n_rows, test_fraction, seed)
            ratings = read_snapshot_ratings(source)
            drawn = future.result()
    else:
        ratings = read_snapshot_ratings(source)
    if kind == "given":
        given_test = read_given_test(source)
        if given_test is None:
            raise ParameterError(
                f"kind='given': snapshot {source.path} has no given_test.parquet; ingest the train "
                "file with --test-source TEST to make one, or choose another --kind"
            )
        train = ratings
        test = given_test
        _check_not_empty(sid, kind, train.num_rows, test.num_rows, cutoff)
        report(progress, 2, steps, "flagging cold-start rows")
        cold_user, cold_item = cold_flags(
            _column(train, "user_idx"), _column(train, "item_idx"),
            _column(test, "user_idx"), _column(test, "item_idx"), n_users, n_items,
        )  # fmt: skip
    else:
        u, i = _column(ratings, "user_idx"), _column(ratings, "item_idx")
        report(progress, 1, steps, "splitting")
        if until is not None:  # a bounded window: rows after it are in neither part
            assert cutoff is not None  # split_id checked it
            in_train, mask = window_masks(_column(ratings, "timestamp"), cutoff, until)
        else:
            if kind == "random":
                ok = drawn is not None and drawn.size == ratings.num_rows
                mask = drawn if ok else random_mask(ratings.num_rows, test_fraction, seed)
            elif kind == "temporal":
                mask = temporal_mask(u, i, _column(ratings, "timestamp"), cutoff=cutoff,
                                     test_fraction=test_fraction, per_user=per_user)
            else:
                mask = user_holdout_mask(u, i, _column(ratings, "timestamp"), k, by, seed)
            in_train = ~mask
        train = ratings.filter(pa.array(in_train))
        test = ratings.filter(pa.array(mask))
        _check_not_empty(sid, kind, train.num_rows, test.num_rows, cutoff)
        report(progress, 2, steps, "flagging cold-start rows")
        cold_user, cold_item = cold_flags(u[in_train], i[in_train], u[mask], i[mask], n_users, n_items)
    test = test.append_column("cold_user", pa.array(cold_user)).append_column(
        "cold_item", pa.array(cold_item)
    )
    uses_seed = kind == "random" or (kind == "user-holdout" and by == "random")
    params: dict[str, Any] = {
        "random": {"test_fraction": test_fraction},
        "temporal": ({"cutoff": cutoff} if until is None else {"cutoff": cutoff, "until": until})
        if cutoff is not None
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
        "snapshot": source.snapshot,
        "dataset": source.dataset,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if until is not None:  # the rows after the window: in neither part
        manifest["n_excluded"] = ratings.num_rows - train.num_rows - test.num_rows
    report(progress, 3, steps, "writing")
    ref = write_split(source, sid, train, test, manifest)
    if not ref.reused:  # else a concurrent writer published the same split first
        report(progress, steps, steps, sid)
    return ref

