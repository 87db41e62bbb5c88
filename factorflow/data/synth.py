"""Seeded synthetic ratings shaped like MovieLens-20M, with a known noise floor.

Model (all draws from one seed)::

    r_ui = clip(round2(μ + b_u + c_i + w_u·v_i + ε_ui), 0.5, 5),   ε ~ N(0, σ²)

where ``round2`` rounds to half stars, ``b_u ~ N(0, 0.35²)``, ``c_i ~ N(0, 0.45²)`` and
``w_u, v_i ~ N(0, s² I_K)`` with ``s`` chosen so that ``w·v`` has std 0.6.
Shape: every user has at least ``min_user_ratings`` ratings; user activity is
heavy-tailed (``min + lognormal`` degrees rescaled to sum to R, capped at M);
item popularity is Zipf-like (``p ∝ (rank + 10)^-1.05`` over a random permutation of
items); each user's items are a popularity-weighted sample *without replacement*
(unique pairs). Timestamps strictly increase within each user (each user's activity
span sits at a random place in 1995–2015, so a global time cutoff mixes users).

The sidecar ``OUT.csv.json`` records the shape, seed, μ, rank, σ and the noise floor:
the RMSE of the published (rounded, clipped) ratings against the noiseless signal
``μ + b_u + c_i + w_u·v_i`` — the RMSE a model that recovered the planted signal gets.
Generation is vectorized over chunks of users (≈1M ratings each), so memory is bounded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from factorflow.errors import ParameterError, check_param
from factorflow.progress import Progress, report

GENERATOR_VERSION = 1
GLOBAL_MEAN = 3.53
USER_BIAS_STD = 0.35
ITEM_BIAS_STD = 0.45
SIGNAL_STD = 0.6  # std of the planted interaction w_u·v_i
USER_ACTIVITY_SIGMA = 1.35  # lognormal σ of (degree - min): ML-20M mean/median ≈ 2.5
ZIPF_EXPONENT = 1.05
ZIPF_OFFSET = 10.0
TIME_START = 789_652_009  # 1995-01-09, the first MovieLens-20M timestamp
TIME_END = 1_427_784_002  # 2015-03-31, the last one
CHUNK_RATINGS = 1_000_000
_HALF_STARS = [f"{0.5 * k:.1f}" for k in range(1, 11)]


def write_synthetic_csv(
    path: str,
    n_users: int,
    n_items: int,
    n_ratings: int,
    seed: int = 0,
    *,
    rank: int = 10,
    noise: float = 0.5,
    min_user_ratings: int = 20,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write ``userId,movieId,rating,timestamp`` CSV to ``path`` and its sidecar ``path + ".json"``.

    Returns the sidecar dict. Same arguments → identical bytes. ``path`` is written to a
    temporary sibling and renamed into place, so a crash never leaves a half-written file.
    """
    _validate(n_users, n_items, n_ratings, seed, rank, noise, min_user_ratings)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = os.fspath(path)
    half_stars = pa.array(_HALF_STARS)
    schema = pa.schema(
        [
            ("userId", pa.int64()),
            ("movieId", pa.int64()),
            ("rating", pa.dictionary(pa.int8(), pa.string())),
            ("timestamp", pa.int64()),
        ]
    )
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    sse = sse_clipped = 0.0
    written = 0
    ts_min, ts_max = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    tmp = f"{path}.tmp-{os.getpid()}"
    chunks = synthetic_chunks(n_users, n_items, n_ratings, seed, rank=rank, noise=noise,
                              min_user_ratings=min_user_ratings)
    degrees = next(chunks)
    try:
        with open(tmp, "wb") as f:
            f.write(b"userId,movieId,rating,timestamp\n")
            writer = pacsv.CSVWriter(f, schema, write_options=options)
            for owner, items, stars, signal, ts in chunks:
                published = stars / 2.0
                sse += float(np.sum((published - signal) ** 2))
                sse_clipped += float(np.sum((published - np.clip(signal, 0.5, 5.0)) ** 2))
                ts_min, ts_max = min(ts_min, int(ts.min())), max(ts_max, int(ts.max()))
                codes = pa.array((stars - 1).astype(np.int8))
                table = pa.table(
                    [
                        pa.array(owner + 1),
                        pa.array(items.astype(np.int64) + 1),
                        pa.DictionaryArray.from_arrays(codes, half_stars),
                        pa.array(ts),
                    ],
                    schema=schema,
                )
                writer.write_table(table)
                written += signal.size
                report(progress, written, n_ratings, "ratings")
            writer.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

    sidecar = {
        "generator": "factorflow.data.synth",
        "generator_version": GENERATOR_VERSION,
        "path": os.path.abspath(path),
        "seed": seed,
        "n_users": n_users,
        "n_items": n_items,
        "n_ratings": n_ratings,
        "n_ratings_written": written,
        "min_user_ratings": min_user_ratings,
        "rank": rank,
        "noise_sigma": noise,
        "global_mean": GLOBAL_MEAN,
        "user_bias_std": USER_BIAS_STD,
        "item_bias_std": ITEM_BIAS_STD,
        "signal_std": SIGNAL_STD,
        "noise_floor_rmse": float(np.sqrt(sse / written)),
        "noise_floor_rmse_vs_clipped_signal": float(np.sqrt(sse_clipped / written)),
        "user_degree_max": int(degrees.max()),
        "user_degree_median": float(np.median(degrees)),
        "timestamp_min": ts_min,
        "timestamp_max": ts_max,
        "rating_values": [float(s) for s in _HALF_STARS],
    }
    with open(path + ".json", "w") as f:
        json.dump(sidecar, f, indent=2, sort_keys=True)
        f.write("\n")
    return sidecar


def synthetic_chunks(n_users: int, n_items: int, n_ratings: int, seed: int = 0, *, rank: int = 10,
                     noise: float = 0.5, min_user_ratings: int = 20) -> Iterator[Any]:
    """The generator behind :func:`write_synthetic_csv` (module docstring), with no file.

    Yields the users' degrees first, then per chunk of users (dense 0-based indices)
    ``(owner, items, stars, signal, timestamps)``: ``stars`` in 1..10 (half stars ×2) and the
    noiseless ``signal``. Same arguments → identical values, as the CSV.
    """
    _validate(n_users, n_items, n_ratings, seed, rank, noise, min_user_ratings)
    rng = np.random.default_rng([seed, 0])
    degrees = user_degrees(rng, n_users, n_items, n_ratings, min_user_ratings)
    popularity = item_popularity(rng, n_items)
    cdf = np.cumsum(popularity)
    cdf /= cdf[-1]
    top_mass = np.concatenate([[0.0], np.cumsum(np.sort(popularity)[::-1])])
    factor_std = (SIGNAL_STD**2 / rank) ** 0.25
    item_factors = rng.normal(0.0, factor_std, size=(n_items, rank))
    item_bias = rng.normal(0.0, ITEM_BIAS_STD, size=n_items)
    user_bias = rng.normal(0.0, USER_BIAS_STD, size=n_users)
    starts = np.concatenate([[0], np.cumsum(degrees)])
    yield degrees
    for c, (lo, hi) in enumerate(_user_chunks(starts, CHUNK_RATINGS)):
        crng = np.random.default_rng([seed, 1, c])
        users = np.arange(lo, hi)
        deg = degrees[lo:hi]
        owner, items = sample_items(crng, users, deg, cdf, popularity, top_mass)
        w = crng.normal(0.0, factor_std, size=(hi - lo, rank))
        signal = (
            GLOBAL_MEAN
            + user_bias[owner]
            + item_bias[items]
            + np.einsum("ij,ij->i", w[owner - lo], item_factors[items])
        )
        raw = signal + crng.normal(0.0, noise, size=signal.size)
        stars = np.clip(np.rint(raw * 2.0), 1, 10)  # half stars 1..10 = 0.5..5.0
        yield owner, items, stars, signal, _timestamps(crng, deg)


def synthetic_matrix(n_users: int, n_items: int, n_ratings: int, seed: int = 0, **kw: Any) -> Any:
    """The same ratings as :func:`write_synthetic_csv` writes, as a users×items float32 CSR in memory
    (dense 0-based indices: userId − 1, movieId − 1), for benchmarks that need no CSV or store."""
    import scipy.sparse as sp

    parts = list(synthetic_chunks(n_users, n_items, n_ratings, seed, **kw))[1:]
    rows = np.concatenate([p[0] for p in parts]).astype(np.int32)
    cols = np.concatenate([p[1] for p in parts]).astype(np.int32)
    vals = (np.concatenate([p[2] for p in parts]) / 2.0).astype(np.float32)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items))


def _validate(
    n_users: int, n_items: int, n_ratings: int, seed: int, rank: int, noise: float, min_user: int
) -> None:
    check_param(isinstance(n_users, int) and n_users >= 1, "n_users", n_users, "an integer ≥ 1")
    check_param(isinstance(n_items, int) and n_items >= 1, "n_items", n_items, "an integer ≥ 1")
    check_param(isinstance(seed, int) and seed >= 0, "seed", seed, "an integer ≥ 0")
    check_param(isinstance(rank, int) and rank >= 1, "rank", rank, "an integer ≥ 1")
    check_param(
        isinstance(noise, (int, float)) and np.isfinite(noise) and noise >= 0,
        "noise", noise, "a finite number ≥ 0",
    )  # fmt: skip
    check_param(
        isinstance(min_user, int) and 1 <= min_user <= n_items,
        "min_user_ratings", min_user, f"an integer in [1, n_items={n_items}]",
    )  # fmt: skip
    lo, hi = n_users * min_user, n_users * n_items
    if not (isinstance(n_ratings, int) and lo <= n_ratings <= hi):
        raise ParameterError(
            f"n_ratings={n_ratings!r}: must be an integer in [n_users*min_user_ratings={lo}, "
            f"n_users*n_items={hi}]; change --ratings, --users or --items"
        )


def user_degrees(
    rng: np.random.Generator, n_users: int, n_items: int, n_ratings: int, min_user: int
) -> np.ndarray:
    """Heavy-tailed degrees d_u ∈ [min_user, n_items] with Σ d_u = n_ratings exactly.

    d_u = min_user + min(cap, s·x_u), x_u ~ lognormal(0, σ), s found by bisection so the
    total is right; the fractional remainders are then rounded so the sum is exact.
    """
    extra_total = n_ratings - n_users * min_user
    cap = n_items - min_user
    x = rng.lognormal(0.0, USER_ACTIVITY_SIGMA, size=n_users)
    if extra_total == 0 or cap == 0:
        return np.full(n_users, min_user + (cap if extra_total else 0), dtype=np.int64)
    lo, hi = 0.0, extra_total / x.min() + 1.0  # at hi every user is capped
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.minimum(cap, mid * x).sum() < extra_total:
            lo = mid
        else:
            hi = mid
    real = np.minimum(cap, hi * x)
    d = np.floor(real).astype(np.int64)
    frac = real - d
    order = np.argsort(-frac, kind="stable")
    while (r := extra_total - int(d.sum())) != 0:
        eligible = order[d[order] < cap] if r > 0 else order[::-1][d[order[::-1]] > 0]
        d[eligible[: abs(r)]] += 1 if r > 0 else -1
    return d + min_user


def item_popularity(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """Zipf-like probabilities p_i ∝ (rank_i + 10)^-1.05 over a random ranking of the items."""
    ranks = rng.permutation(n_items)
    p = (ranks + ZIPF_OFFSET) ** -ZIPF_EXPONENT
    return p / p.sum()


def sample_items(
    rng: np.random.Generator,
    users: np.ndarray,
    degrees: np.ndarray,
    cdf: np.ndarray,
    popularity: np.ndarray,
    top_mass: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For each user draw ``degree`` distinct items, popularity-weighted, without replacement.

    Returns ``(owner, item)`` grouped by user in draw order. Both paths sample the same
    law (successive sampling): light users by drawing with replacement and discarding
    repeats (rounds until full); users whose repeats would cost more than scoring every
    item use Gumbel-top-k over all items.
    """
    n_items = popularity.size
    # expected draws with rejection ≈ d / (1 - mass of the d most popular items)
    cost = degrees / np.maximum(1.0 - top_mass[degrees], 1e-12)
    heavy = cost > 0.5 * n_items
    parts = []
    if (~heavy).any():
        parts.append(_sample_by_rejection(rng, users[~heavy], degrees[~heavy], cdf, popularity))
    if heavy.any():
        parts.append(_sample_by_gumbel(rng, users[heavy], degrees[heavy], popularity))
    owner = np.concatenate([p[0] for p in parts])
    items = np.concatenate([p[1] for p in parts])
    order = np.argsort(owner, kind="stable")
    return owner[order], items[order].astype(np.int32)


def _sample_by_rejection(
    rng: np.random.Generator, users: np.ndarray, degrees: np.ndarray, cdf: np.ndarray, p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n_items = p.size
    need = degrees.astype(np.int64).copy()
    mass = np.zeros(users.size)  # popularity mass already taken by each user
    chosen = np.empty(0, dtype=np.int64)  # sorted keys user*n_items + item
    batches = []
    active = np.arange(users.size)
    while active.size:
        draws = np.ceil(need[active] / np.maximum(1.0 - mass[active], 1e-3) * 1.2).astype(np.int64) + 4
        owner = np.repeat(active, draws)
        items = np.searchsorted(cdf, rng.random(owner.size), side="right")
        np.minimum(items, n_items - 1, out=items)
        keys = owner * n_items + items
        if chosen.size:
            pos = np.minimum(np.searchsorted(chosen, keys), chosen.size - 1)
            fresh = chosen[pos] != keys
            keys = keys[fresh]
        _, first = np.unique(keys, return_index=True)
        first.sort()  # first occurrences, in draw order (grouped by owner)
        keys = keys[first]
        own = keys // n_items
        group_start = np.searchsorted(own, own, side="left")
        keep = (np.arange(own.size) - group_start) < need[own]
        keys = keys[keep]
        own = own[keep]
        batches.append(keys)
        need -= np.bincount(own, minlength=users.size)
        mass += np.bincount(own, weights=p[keys % n_items], minlength=users.size)
        chosen = np.sort(np.concatenate([chosen, keys]))
        active = np.flatnonzero(need > 0)
    keys = np.concatenate(batches)
    keys = keys[np.argsort(keys // n_items, kind="stable")]
    return users[keys // n_items], (keys % n_items)


def _sample_by_gumbel(
    rng: np.random.Generator, users: np.ndarray, degrees: np.ndarray, p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n_items = p.size
    logp = np.log(p)
    rows = max(1, 4_000_000 // n_items)
    owners, items = [], []
    for lo in range(0, users.size, rows):
        hi = min(users.size, lo + rows)
        keys = logp + rng.gumbel(size=(hi - lo, n_items))
        order = np.argsort(-keys, axis=1)
        take = np.arange(n_items)[None, :] < degrees[lo:hi, None]
        owners.append(np.repeat(users[lo:hi], degrees[lo:hi]))
        items.append(order[take])
    return np.concatenate(owners), np.concatenate(items)


def _timestamps(rng: np.random.Generator, degrees: np.ndarray) -> np.ndarray:
    """Strictly increasing per user: a random start, then random gaps over a lognormal span."""
    n = degrees.size
    window = TIME_END - TIME_START
    span = np.minimum(rng.lognormal(np.log(30 * 86400), 2.0, size=n), 0.9 * window)
    start = TIME_START + rng.random(n) * (window - span - degrees)
    gaps = rng.exponential(1.0, size=int(degrees.sum()))
    owner = np.repeat(np.arange(n), degrees)
    csum = np.cumsum(gaps)
    first = np.concatenate([[0], np.cumsum(degrees)[:-1]])
    base = np.repeat(csum[first] - gaps[first], degrees)
    total = np.repeat(csum[first + degrees - 1] - (csum[first] - gaps[first]), degrees)
    frac = (csum - base) / total  # in (0, 1], increasing within user
    rank = np.arange(owner.size) - np.repeat(first, degrees)
    return (start[owner] + np.floor(frac * span[owner]) + rank).astype(np.int64)


def _user_chunks(starts: np.ndarray, per_chunk: int) -> list[tuple[int, int]]:
    """Contiguous user ranges holding about ``per_chunk`` ratings each."""
    n_users = starts.size - 1
    cuts = np.searchsorted(starts, np.arange(per_chunk, int(starts[-1]), per_chunk), side="left")
    bounds = np.unique(np.concatenate([[0], cuts, [n_users]]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
