"""Top-N recommendations: pure functions over a scorer or factor arrays, no I/O.

Every score is the model's prediction r̂ (for factor models r̂_ij = w_iᵀu_j + b_i + c_j + μ,
spec §4) in float32, as published. Known users and the batch file are scored through the
:class:`~factorflow.serving.scoring.Scorer` interface (``score_users``), so the batch file,
the top-N metrics and ``recommend`` rank alike, bit for bit. Rankings are by score,
descending; ties go to the smaller item index, so results are deterministic. Cold start is a
contract, not a NaN: an unknown user gets :func:`popular_fallback` (flagged
``fallback=True``); a new user with a few ratings is folded in by the model
(:mod:`factorflow.serving.foldin`) and ranked with :func:`top_n_for_vector`. Similar items by
cosine live in :mod:`factorflow.serving.similar`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from numba import njit, prange

from factorflow.errors import ParameterError, check_param
from factorflow.factors import FactorArrays
from factorflow.progress import Progress, report
from factorflow.serving.scoring import Scorer

BLOCK_BUDGET = 1 << 24  # at most this many float32 scores (64 MiB) live at once in recommend_all


@dataclass
class Ranked:
    """Ranked items: ``item_idx`` (int64) with their ``scores`` (float32), best first.

    Unpacks as ``items, scores = ranked``; ``fallback`` is True when the list is not
    personal (popularity instead of the user's factors).
    """

    item_idx: np.ndarray
    scores: np.ndarray
    fallback: bool = False

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.item_idx, self.scores))

    def __len__(self) -> int:
        return len(self.item_idx)


def rank_scores(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` finite scores of a 1-D array: by score desc, then index asc."""
    ok = np.flatnonzero(np.isfinite(scores))
    if n <= 0 or len(ok) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    s = scores[ok]
    if len(ok) > n:
        kth = np.partition(s, len(s) - n)[len(s) - n]  # n-th largest
        keep = s >= kth  # ties at the boundary all stay; the lexsort settles them
        ok, s = ok[keep], s[keep]
    order = np.lexsort((ok, -s))[:n]
    return ok[order].astype(np.int64), s[order].astype(np.float32)


def score_user(factors: FactorArrays, w: np.ndarray, b: float) -> np.ndarray:
    """r̂ for one user vector ``w`` with bias ``b`` against every item (float32)."""
    w = np.asarray(w, dtype=np.float32)
    return (factors.item_factors @ w + factors.item_bias
            + np.float32(b + factors.global_mean)).astype(np.float32)


def top_n(scorer: Scorer, user_idx: int, n: int, exclude: np.ndarray | None = None, *,
          allowed: np.ndarray | None = None) -> Ranked:
    """The ``n`` best items for a known user, skipping ``exclude`` (e.g. the user's train items).

    ``allowed`` is an optional boolean mask over items (e.g. items with train ratings). Scores
    come from ``scorer.score_users``, exactly as in the batch file.
    """
    check_param(0 <= int(user_idx) < scorer.n_users, "user_idx", user_idx,
                f"in [0, {scorer.n_users})")
    check_param(int(n) >= 0, "n", n, ">= 0")
    scores = scorer.score_users(np.array([int(user_idx)], dtype=np.int64))[0]
    return _rank_excluding(scores, int(n), exclude, allowed)


def _rank_excluding(scores: np.ndarray, n: int, exclude: np.ndarray | None,
                    allowed: np.ndarray | None) -> Ranked:
    """Rank one row of scores after setting excluded and disallowed items to -inf (in place)."""
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    if allowed is not None:
        scores[~np.asarray(allowed, dtype=bool)] = -np.inf
    items, s = rank_scores(scores, n)
    return Ranked(items, s)


def top_n_for_vector(factors: FactorArrays, w: np.ndarray, b: float, n: int,
                     exclude: np.ndarray | None = None, *,
                     allowed: np.ndarray | None = None) -> Ranked:
    """Like :func:`top_n` for a user given by its factor vector and bias (e.g. one folded in)."""
    check_param(int(n) >= 0, "n", n, ">= 0")
    return _rank_excluding(score_user(factors, w, b), int(n), exclude, allowed)


def recommend_all(scorer: Scorer, seen_csr: sp.spmatrix | None, n: int, *,
                  block_users: int = 2048, allowed: np.ndarray | None = None,
                  progress: Progress | None = None) -> pa.Table:
    """Top-``n`` unseen items for every user: ``user_idx, rank (1..n), item_idx, score``.

    Users are scored in blocks (one matrix product per block, at most ``block_users`` users
    and :data:`BLOCK_BUDGET` scores at a time), so memory stays bounded whatever N×M is;
    a compiled one-pass selection (``_topn_rows``) picks each row's top ``n``.
    """
    parts_u, parts_r, parts_i, parts_s = [], [], [], []
    for users, top_i, top_s, counts in top_n_blocks(scorer, seen_csr, n, block_users=block_users,
                                                   allowed=allowed, progress=progress):
        keep = np.arange(top_i.shape[1])[None, :] < counts[:, None]
        parts_u.append(np.repeat(users, counts))
        parts_r.append(np.broadcast_to(np.arange(1, top_i.shape[1] + 1), top_i.shape)[keep])
        parts_i.append(top_i[keep])
        parts_s.append(top_s[keep])

    def cat(parts: list[np.ndarray], dt: type) -> np.ndarray:
        return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

    return pa.table({
        "user_idx": pa.array(cat(parts_u, np.int32)),
        "rank": pa.array(cat(parts_r, np.int32)),
        "item_idx": pa.array(cat(parts_i, np.int32)),
        "score": pa.array(cat(parts_s, np.float32)),
    })


def top_n_blocks(scorer: Scorer, seen_csr: sp.spmatrix | None, n: int, *,
                 users: np.ndarray | None = None, block_users: int = 2048,
                 allowed: np.ndarray | None = None, progress: Progress | None = None,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(users, top_i, top_s, counts)`` per block of users (all users, or ``users``).

    ``top_i[r, :counts[r]]`` are user ``users[r]``'s best unseen items, best first (ties → the
    smaller item index); scores are ``scorer.score_users`` (float32), then items outside
    ``allowed`` and each user's ``seen_csr`` items are set to -inf. Shared by the batch
    recommendations and the top-N metrics, so both score and break ties alike (the batch file
    also applies the candidate filter of :mod:`factorflow.serving.candidates`; the metrics do not).
    """
    n_u, n_i = scorer.n_users, scorer.n_items
    check_param(int(n) >= 1, "n", n, ">= 1")
    check_param(int(block_users) >= 1, "block_users", block_users, ">= 1")
    if seen_csr is not None:
        seen_csr = sp.csr_matrix(seen_csr)
        if seen_csr.shape != (n_u, n_i):
            raise ParameterError(f"seen_csr: shape {seen_csr.shape} is not (n_users, n_items) = {(n_u, n_i)}")
    users = np.arange(n_u) if users is None else np.asarray(users, dtype=np.int64)
    n = min(int(n), n_i)
    block = max(1, min(int(block_users), BLOCK_BUDGET // max(n_i, 1)))
    disallowed = None if allowed is None else ~np.asarray(allowed, dtype=bool)
    for lo in range(0, len(users), block):
        who = users[lo:lo + block]
        s = scorer.score_users(who)
        if disallowed is not None:
            s[:, disallowed] = -np.inf
        if seen_csr is not None:
            sub = seen_csr[who]
            rows = np.repeat(np.arange(len(who)), np.diff(sub.indptr))
            s[rows, sub.indices] = -np.inf
        top_i, top_s, counts = _topn_rows(s, n)
        del s  # free this block before the next product allocates its own
        yield who, top_i, top_s, counts
        report(progress, lo + len(who), len(users), "users scored")


@njit(cache=True, nogil=True, parallel=True)
def _topn_rows(s, n):  # pragma: no cover - compiled
    """One pass per row keeping a sorted top-n buffer (O(M) per row, unlike a full argpartition).

    Items are scanned in index order and only a strictly better score displaces, so equal
    scores keep the smaller item index. Non-finite scores (excluded items) are skipped.
    """
    rows, m = s.shape
    top_i = np.zeros((rows, n), dtype=np.int32)
    top_s = np.full((rows, n), -np.inf, dtype=np.float32)
    counts = np.zeros(rows, dtype=np.int64)
    for r in prange(rows):
        c = 0
        for j in range(m):
            v = s[r, j]
            if not np.isfinite(v):
                continue
            if c == n and not v > top_s[r, n - 1]:
                continue
            p = c if c < n else n - 1
            while p > 0 and v > top_s[r, p - 1]:
                if p < n:
                    top_s[r, p] = top_s[r, p - 1]
                    top_i[r, p] = top_i[r, p - 1]
                p -= 1
            top_s[r, p] = v
            top_i[r, p] = j
            if c < n:
                c += 1
        counts[r] = c
    return top_i, top_s, counts


def popular_fallback(factors: FactorArrays, n_ratings: np.ndarray | None, n: int,
                     min_ratings: int = 10, exclude: np.ndarray | None = None) -> Ranked:
    """Non-personal list: μ + c_j, best first, among items with ≥ ``min_ratings`` train ratings.

    If fewer than ``n`` items qualify, the rest are filled from the items with at least one
    train rating (then any item). Flagged ``fallback=True``.
    """
    check_param(int(n) >= 0, "n", n, ">= 0")
    scores = (factors.item_bias + np.float32(factors.global_mean)).astype(np.float32)
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    if n_ratings is None:
        items, s = rank_scores(scores, int(n))
        return Ranked(items, s, fallback=True)
    counts = np.asarray(n_ratings)
    chosen_i, chosen_s = [], []
    taken = np.zeros(len(scores), dtype=bool)
    for floor in (min_ratings, 1, 0):
        need = int(n) - sum(len(c) for c in chosen_i)
        if need <= 0:
            break
        tier = np.where((counts >= floor) & ~taken, scores, -np.inf)
        items, s = rank_scores(tier, need)
        taken[items] = True
        chosen_i.append(items), chosen_s.append(s)
    return Ranked(np.concatenate(chosen_i), np.concatenate(chosen_s), fallback=True)


def attach_raw_ids(table: pa.Table, user_ids: pa.Array, item_ids: pa.Array) -> pa.Table:
    """Add ``user_id`` / ``item_id`` raw-id columns to a :func:`recommend_all` table."""
    return table.append_column("user_id", user_ids.take(table.column("user_idx"))).append_column(
        "item_id", item_ids.take(table.column("item_idx")))
