"""Top-N recommendations: pure functions over a scorer or factor arrays, no I/O.

Every score is the model's prediction r̂ (for factor models r̂_ij = w_iᵀu_j + b_i + c_j + μ,
spec §4) in float32, as published. The batch file, the top-N metrics and ``recommend`` rank alike:
the same formula, ``(w·u + b) + (c + μ)`` (:meth:`~factorflow.factors.FactorArrays.score_users`;
any other :class:`~factorflow.serving.scoring.Scorer` through its ``score_users``). The BLAS
product may round the last bit differently for another set of users (the batch file's tiles, one
user alone), so items whose scores differ by about float32 rounding may order either way between
them. Rankings are by score, descending; ties go to the smaller item index, so results are
deterministic. Cold start is a
contract, not a NaN: an unknown user gets :func:`popular_fallback` (flagged
``fallback=True``); a new user with a few ratings is folded in by the model
(:mod:`factorflow.serving.foldin`) and ranked with :func:`top_n_for_vector`. Similar items by
cosine live in :mod:`factorflow.serving.similar`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from factorflow.errors import ParameterError, check_param
from factorflow.factors import FactorArrays
from factorflow.progress import Progress, report
from factorflow.serving._blas import single_threaded_blas
from factorflow.serving._select import rank_rows, run_split, run_tasks, select_tile, select_user_independent, threads
from factorflow.serving.scoring import Scorer

BLOCK_BUDGET = 1 << 24  # at most this many float32 scores (64 MiB) live at once in recommend_all
TILE_USERS = 256  # a factor-table tile: this many users ...
TILE_ITEMS = 512  # ... × this many items (512 KiB of float32 scores: a core's L2 here)

#: ``select(who, top_i, top_s, counts)``: fills one block's results (see :func:`top_n_blocks`).
BlockSelector = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


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
                  block_users: int = 8192, allowed: np.ndarray | None = None,
                  progress: Progress | None = None) -> pa.Table:
    """Top-``n`` unseen items for every user: ``user_idx, rank (1..n), item_idx, score``.

    Users are scored in blocks (:func:`top_n_blocks`: one matrix product per block, at most
    ``block_users`` users and :data:`BLOCK_BUDGET` scores at a time), so memory stays bounded
    whatever N×M is; a compiled one-pass selection picks each row's top ``n``.
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
                 users: np.ndarray | None = None, block_users: int = 8192,
                 allowed: np.ndarray | None = None, progress: Progress | None = None,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(users, top_i, top_s, counts)`` per block of users (all users, or ``users``).

    ``top_i[r, :counts[r]]`` are user ``users[r]``'s best items among those outside its
    ``seen_csr`` row and inside ``allowed``, best first (ties → the smaller item index; non-finite
    scores never ranked); ``top_s`` are their scores r̂ (float32). Shared by the batch
    recommendations and the top-N metrics, so both score and break ties alike (the batch file
    also applies the candidate filter of :mod:`factorflow.serving.candidates`; the metrics do not).

    Blocks hold ``block_users`` users (at most :data:`BLOCK_BUDGET` list entries; a scorer other
    than factor tables also at most ``BLOCK_BUDGET // n_items`` users, the scores it returns).
    Three paths, all ranking with the compiled selection of :mod:`factorflow.serving._select`,
    which skips seen and disallowed items while walking each user's CSR row:

    - :class:`~factorflow.factors.FactorArrays` of rank > 0: cache-sized tiles of
      :data:`TILE_USERS` users × :data:`TILE_ITEMS` items, each one single-threaded BLAS product
      ``W[users] @ Uᵀ[:, items]`` selected from at once, while it is in cache (the biases added in
      the selection: ``(w·u + b) + (c + μ)`` in float32, :meth:`~FactorArrays.score_users`'
      formula); the tiles of a block are shared out to :func:`~factorflow.serving._select.threads`
      threads. The product of a tile may round the last bit differently from ``score_users`` over
      another set of users (BLAS sums in an order that depends on the shapes), so scores agree
      with it to float32 rounding and items whose scores differ by about that much
      (≲ 1e-6 relative) may come in either order.
    - A rank-0 table (the global-mean and bias baselines, whose order does not depend on the
      user): the items are ranked once for all users and each user's list read off that order
      (exactly the ranking of ``score_users``).
    - Any other scorer: ``score_users`` per block, then the selection (exactly its ranking).
    """
    n_u, n_i = scorer.n_users, scorer.n_items
    check_param(int(n) >= 1, "n", n, ">= 1")
    check_param(int(block_users) >= 1, "block_users", block_users, ">= 1")
    seen_ptr, seen_idx = _seen_rows(seen_csr, n_u, n_i)
    users = np.arange(n_u) if users is None else np.asarray(users, dtype=np.int64)
    if users.size and (int(users.min()) < 0 or int(users.max()) >= n_u):
        raise ParameterError(f"users: indices must be in [0, {n_u}), got {int(users.min())}..{int(users.max())}")
    n = min(int(n), n_i)
    tiled = type(scorer) is FactorArrays and scorer.rank > 0
    block = max(1, min(int(block_users), BLOCK_BUDGET // max(n if tiled else n_i, 1)))
    allowed_u8 = np.zeros(0, np.uint8) if allowed is None else np.asarray(allowed, dtype=bool).astype(np.uint8)
    if allowed is not None and allowed_u8.shape != (n_i,):
        raise ParameterError(f"allowed: shape {allowed_u8.shape} is not (n_items,) = ({n_i},)")
    select = _block_selector(scorer, n, allowed_u8, seen_ptr, seen_idx)
    for lo in range(0, len(users), block):
        who = users[lo:lo + block]
        top_i = np.zeros((len(who), n), dtype=np.int32)
        top_s = np.full((len(who), n), -np.inf, dtype=np.float32)
        counts = np.zeros(len(who), dtype=np.int64)
        select(who, top_i, top_s, counts)
        yield who, top_i, top_s, counts
        report(progress, lo + len(who), len(users), "users scored")


def _seen_rows(seen_csr: sp.spmatrix | None, n_u: int, n_i: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64, sorted indices) of the seen matrix; an empty one when there is none."""
    if seen_csr is None:
        return np.zeros(n_u + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    seen_csr = sp.csr_matrix(seen_csr)
    if seen_csr.shape != (n_u, n_i):
        raise ParameterError(f"seen_csr: shape {seen_csr.shape} is not (n_users, n_items) = {(n_u, n_i)}")
    if not seen_csr.has_sorted_indices:
        seen_csr = seen_csr.sorted_indices()
    return seen_csr.indptr.astype(np.int64, copy=False), seen_csr.indices


def _block_selector(scorer: Scorer, n: int, allowed: np.ndarray, seen_ptr: np.ndarray, seen_idx: np.ndarray
                    ) -> BlockSelector:
    """``select(who, top_i, top_s, counts)`` filling one block's results, for this scorer."""
    if type(scorer) is FactorArrays and scorer.rank == 0:
        return _user_independent_selector(scorer, n, allowed, seen_ptr, seen_idx)
    if type(scorer) is FactorArrays:
        return _tiled_selector(scorer, n, allowed, seen_ptr, seen_idx)
    no_bias = np.zeros(0, dtype=np.float32)

    def select_scored(who: np.ndarray, top_i: np.ndarray, top_s: np.ndarray, counts: np.ndarray) -> None:
        s = scorer.score_users(who)
        run_split(select_tile, len(who), s, 0, False, np.zeros(len(who), dtype=s.dtype), no_bias.astype(s.dtype), who,
                  seen_ptr, seen_idx, seen_ptr[who], allowed, n, top_i, top_s, counts)
    return select_scored


def _tiled_selector(f: FactorArrays, n: int, allowed: np.ndarray, seen_ptr: np.ndarray, seen_idx: np.ndarray
                    ) -> BlockSelector:
    """Factor tables: tiles of single-threaded BLAS products, each selected from while in cache.

    A block's users are cut into tasks of :data:`TILE_USERS`, handed out to the threads; a task is
    one compiled call (:func:`~factorflow.serving._select.rank_rows`) that runs every item panel's
    ``cblas_sgemm`` and selection. Without NumPy's OpenBLAS (another BLAS): the same tiles with
    ``np.matmul`` from Python, on one thread.
    """
    item_t, offset = f.item_terms()
    n_i, k = f.n_items, f.rank
    width = min(TILE_ITEMS, n_i)
    panels = [(j0, item_t[:, j0:j0 + width]) for j0 in range(0, n_i, width)]
    bufs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def select_factors(who: np.ndarray, top_i: np.ndarray, top_s: np.ndarray, counts: np.ndarray) -> None:
        with single_threaded_blas() as blas:
            def tile_rows(task: int, slot: int) -> None:
                a, b = task * TILE_USERS, min(len(who), (task + 1) * TILE_USERS)
                rows = who[a:b]
                if slot not in bufs:
                    bufs[slot] = (np.empty((TILE_USERS, k), np.float32), np.empty(TILE_USERS * width, np.float32))
                w_buf, s_buf = bufs[slot]
                if blas is not None:
                    rank_rows(blas.sgemm, f.user_factors, rows, item_t, offset, f.user_bias, seen_ptr, seen_idx,
                              allowed, n, top_i[a:b], top_s[a:b], counts[a:b], w_buf, s_buf, width)
                    return
                w = np.asarray(f.user_factors[rows], dtype=np.float32)
                bias, pos = f.user_bias[rows].astype(np.float32), seen_ptr[rows]
                for j0, panel in panels:
                    s = np.matmul(w, panel, out=s_buf[:len(rows) * panel.shape[1]].reshape(len(rows), -1))
                    select_tile(s, j0, True, bias, offset, rows, seen_ptr, seen_idx, pos, allowed, n,
                                top_i[a:b], top_s[a:b], counts[a:b], 0, len(rows))

            run_tasks(tile_rows, -(-len(who) // TILE_USERS), threads() if blas is not None else 1)
    return select_factors


def _user_independent_selector(f: FactorArrays, n: int, allowed: np.ndarray, seen_ptr: np.ndarray,
                               seen_idx: np.ndarray) -> BlockSelector:
    """A rank-0 table scores (0 + b_u) + (c_j + μ): rank the items once by c_j + μ (ties → index)."""
    offset = f.item_terms()[1]
    cand = np.flatnonzero(np.isfinite(offset) & (allowed.astype(bool) if allowed.size else True))
    order = cand[np.lexsort((cand, -offset[cand].astype(np.float64)))]
    sorted_off = offset[order]
    starts = np.flatnonzero(np.r_[True, sorted_off[1:] != sorted_off[:-1]]) if order.size else np.zeros(0, np.int64)
    run_start = np.append(starts, order.size).astype(np.int64)
    run_offset = sorted_off[starts].astype(np.float32)
    order = order.astype(np.int32)

    def select_baseline(who: np.ndarray, top_i: np.ndarray, top_s: np.ndarray, counts: np.ndarray) -> None:
        select_user_independent(f.user_bias[who].astype(np.float32), order, run_start, run_offset, who, seen_ptr,
                                seen_idx, n, top_i, top_s, counts)
    return select_baseline


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
