"""Backfills without Prefect: cutoffs and windows, the plan, reuse keys, rows, historical publishing.

A backfill retrains a model as it would have been trained at each of a series of past moments
and measures it on what happened next:

- **Cutoffs** are ``start, start + every, start + 2·every, …`` while ``< end`` (instants in UTC,
  as Unix seconds: the snapshot's ``timestamp`` unit). ``start``/``end`` are ISO dates or
  datetimes (``2015-01-01``, ``2015-01-01T12:00``, ``…Z`` or ``+02:00``; no offset = UTC);
  ``every`` is a duration ``N`` + ``s|m|h|d|w`` (fixed lengths: ``30d``, ``12h``, ``1w``,
  ``365d``) or ``mo|y`` (calendar months and years, counted from ``start``: ``3mo``, ``1y``;
  ``365d`` from 2015-01-01 gives a third cutoff 2016-12-31 before 2017-01-01, ``1y`` does not).
  At most :data:`MAX_CUTOFFS`.
- **Window** of cutoff ``c``: train = ratings with ``timestamp < c``; test = ``c ≤ timestamp <
  c + every`` (the bounded temporal split ``temporal-cut{c}-to{c+every}`` of
  :mod:`factorflow.data.splits`); later ratings are in neither. The last window may reach
  past ``end``: ``end`` bounds the cutoffs, not the windows.
- **Checks against the data** (:func:`plan`): the snapshot must have timestamps; the first
  cutoff must come after the first rating (else its train part is empty) and at or before the
  last one (else every window is empty) — both ParameterErrors naming ``start``. A later cutoff
  whose window holds no rating (a gap in the data, or a window past its end) is not an error:
  it becomes a row with status ``skipped`` and a note, and nothing is trained for it.
- **Reuse**: each finished cutoff is stored under :func:`cutoff_key` (dataset, snapshot, split
  id, model kind and params, top_n); a re-run finds it and does not train again. With
  ``publish`` a stored cutoff is reused only when it was published under the same name and
  that version still exists.
- **Rows** (:data:`COLUMNS`): cutoff, window end, train and test sizes, test RMSE, MAE,
  NDCG@10, the bias and global-mean baselines' RMSE, the fit's seconds, status
  (:data:`STATUSES`), reused, the published version and a note.
- **Historical versions** (:func:`publish_historical`): with ``publish`` each cutoff's model is
  published with ``status: "historical"`` and ``cutoff`` in ``model.json``, never as CURRENT
  (a model the publish gate blocks is kept as ``rejected``, also never CURRENT).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import re
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from factorflow.errors import ParameterError

#: Most cutoffs one backfill may have.
MAX_CUTOFFS = 100
#: The columns of a backfill row, in order.
COLUMNS = ("cutoff", "window_end", "n_train", "n_test", "rmse", "mae", "ndcg@10", "bias_rmse", "global_mean_rmse",
           "train_seconds", "status", "reused", "version", "note")
#: Row statuses: "failed" is a failure of that cutoff; "skipped" had no test ratings.
STATUSES = ("evaluated", "published", "rejected", "failed", "skipped")
#: Statuses that carry metrics (a stored cutoff with one of them is reused).
FINISHED = ("evaluated", "published", "rejected")
#: Held-out metrics kept in a cutoff's stored record.
METRICS = ("rmse", "mae", "ndcg@10", "precision@10", "recall@10")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_EVERY_RE = re.compile(r"^\s*(\d+)\s*(mo|[smhdwy])\s*$")
_KEY_VERSION = "backfill-cutoff-v1"


# ---------------------------------------------------------------- instants and durations


def parse_instant(value: str | date | datetime, param: str = "start") -> int:
    """Unix seconds (UTC) of an ISO date or datetime (a naive one is UTC); ParameterError naming ``param``."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ParameterError(f"{param}={value!r}: must be an ISO date or datetime in UTC, e.g. 2015-01-01 or "
                                 "2015-01-01T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def format_instant(ts: int) -> str:
    """``2015-01-01`` at midnight UTC, else ``2015-01-01T12:00:00Z``."""
    moment = datetime.fromtimestamp(int(ts), UTC)
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_every(text: str, param: str = "every") -> tuple[int, str]:
    """``(N, unit)`` of a duration ``N`` + ``s|m|h|d|w`` (seconds … weeks: fixed lengths) or
    ``mo|y`` (calendar months and years), N ≥ 1: ``30d``, ``12h``, ``1w``, ``365d``, ``1y``, ``3mo``."""
    m = _EVERY_RE.match(str(text))
    if not m or int(m[1]) < 1:
        raise ParameterError(f"{param}={text!r}: must be a duration like 30d, 12h, 1w, 365d, 3mo or 1y "
                             "(a whole number ≥ 1 and one of s, m, h, d, w, mo, y)")
    return int(m[1]), m[2]


def advance(start: int, step: tuple[int, str], k: int = 1) -> int:
    """``start + k·step`` in Unix seconds; calendar months and years are counted from ``start``
    (the day clamped to the month's last: 2015-01-31 + 1mo = 2015-02-28)."""
    n, unit = step
    if unit in _UNITS:
        return int(start) + k * n * _UNITS[unit]
    months = k * n * (12 if unit == "y" else 1)
    moment = datetime.fromtimestamp(int(start), UTC)
    year, month0 = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return int(moment.replace(year=year, month=month0 + 1, day=day).timestamp())


def windows(start: int, end: int, step: tuple[int, str], *, names: dict[str, str] | None = None,
            max_cutoffs: int = MAX_CUTOFFS) -> list[tuple[int, int]]:
    """``(cutoff, until)`` pairs: cutoffs ``start, start + step, …`` while ``< end``, each window
    ending at the next one (``cutoff + step``). ParameterError (naming ``end`` or ``every`` as
    ``names`` spells them) when ``end ≤ start`` or there would be more than ``max_cutoffs``."""
    names = {"start": "start", "end": "end", "every": "every", **(names or {})}
    if end <= start:
        raise ParameterError(f"{names['end']}={format_instant(end)}: must be after {names['start']}="
                             f"{format_instant(start)}")
    cuts = [start]
    while True:
        nxt = advance(start, step, len(cuts))
        if nxt >= end:
            break
        if len(cuts) >= max_cutoffs:
            raise ParameterError(f"{names['every']}={step[0]}{step[1]}: more than {max_cutoffs} cutoffs from "
                                 f"{format_instant(start)} to {format_instant(end)}; choose a longer "
                                 f"{names['every']} or a shorter range")
        cuts.append(nxt)
    return [(c, advance(start, step, k + 1)) for k, c in enumerate(cuts)]


def windows_from_request(start: str | date | datetime, end: str | date | datetime, every: str,
                         names: dict[str, str] | None = None) -> list[tuple[int, int]]:
    """The windows of a request as the user typed it; every check that needs no data (one-line
    ParameterErrors naming the option as ``names`` spells it)."""
    names = {"start": "start", "end": "end", "every": "every", **(names or {})}
    s = parse_instant(start, names["start"])
    e = parse_instant(end, names["end"])
    return windows(s, e, parse_every(every, names["every"]), names=names)


def window_counts(timestamps: np.ndarray, wins: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(n_train, n_test)`` of each window: ``#{t < cutoff}``, ``#{cutoff ≤ t < until}``."""
    t = np.sort(np.asarray(timestamps, dtype=np.int64))
    c = np.asarray([w[0] for w in wins], dtype=np.int64)
    u = np.asarray([w[1] for w in wins], dtype=np.int64)
    before = np.searchsorted(t, c, side="left")
    upto = np.searchsorted(t, u, side="left")
    return [(int(a), int(b - a)) for a, b in zip(before, upto, strict=True)]


# ---------------------------------------------------------------- plan and reuse keys


def _digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def cutoff_key(dataset: str, snapshot: str, split: str, kind: str, params: dict[str, Any], top_n: int) -> str:
    """The content-addressed key of one cutoff's result: same data, window, model and N ⇒ same key."""
    return _digest(_KEY_VERSION, dataset, snapshot, split, kind, params, int(top_n))[:32]


def backfill_id(dataset: str, snapshot: str, kind: str, params: dict[str, Any], wins: list[tuple[int, int]],
                top_n: int) -> str:
    """``DATASET-KIND-HASH``: the folder of a backfill's table (the same request ⇒ the same ID)."""
    safe = re.sub(r"[^A-Za-z0-9._]", "_", dataset)[:80] or "data"
    digest = _digest(snapshot, kind, params, [list(w) for w in wins], top_n)[:12]
    return f"{safe}-{re.sub(r'[^A-Za-z0-9._]', '_', kind)}-{digest}"


def check_against_data(cuts: list[int], manifest: dict[str, Any], param: str = "start") -> None:
    """ParameterError when the snapshot has no timestamps, or the first cutoff has no rating
    before it, or comes after the last rating (see the module docstring)."""
    if manifest.get("has_timestamp") is False:
        raise ParameterError(f"{param}: the source has no timestamp column, so it cannot be cut in time; "
                             "a backfill needs userId,movieId,rating,timestamp")
    first, last = manifest.get("timestamp_min"), manifest.get("timestamp_max")
    if first is None or last is None:
        return
    if cuts[0] <= int(first):
        raise ParameterError(f"{param}={format_instant(cuts[0])}: the first cutoff must come after the first rating "
                             f"({format_instant(int(first))}), else it has nothing to train on")
    if cuts[0] > int(last):
        raise ParameterError(f"{param}={format_instant(cuts[0])}: after the last rating "
                             f"({format_instant(int(last))}); every window would be empty")


def plan(timestamps: np.ndarray, manifest: dict[str, Any], wins: list[tuple[int, int]], *, dataset: str,
         snapshot: str, kind: str, params: dict[str, Any], top_n: int, param: str = "start") -> list[dict[str, Any]]:
    """One entry per cutoff: ``cutoff``, ``until``, ``label`` (its date), ``split`` (id), ``n_train``,
    ``n_test``, ``key`` (:func:`cutoff_key`), ``status`` (``planned``, or ``skipped`` with a
    ``note`` for an empty window). Raises what :func:`check_against_data` raises."""
    from factorflow.data.splits import split_id

    check_against_data([w[0] for w in wins], manifest, param)
    out = []
    for (c, until), (n_train, n_test) in zip(wins, window_counts(timestamps, wins), strict=True):
        sid = split_id("temporal", cutoff=int(c), until=int(until))
        entry: dict[str, Any] = {"cutoff": int(c), "until": int(until), "label": format_instant(c), "split": sid,
                                 "n_train": n_train, "n_test": n_test, "status": "planned", "note": None,
                                 "key": cutoff_key(dataset, snapshot, sid, kind, params, top_n)}
        if not n_test:
            entry["status"] = "skipped"
            entry["note"] = (f"no ratings in [{format_instant(c)}, {format_instant(until)}): nothing to evaluate "
                             "on, not trained")
        out.append(entry)
    return out


def reusable(record: dict[str, Any] | None, publish: bool, name: str | None, versions: list[str] | None) -> bool:
    """Whether a stored cutoff ``record`` may stand for this run: it finished, and with
    ``publish`` it was published under ``name`` as a version that still exists (``versions``)."""
    if not record or record.get("status") not in FINISHED or not record.get("metrics"):
        return False
    if not publish:
        return True
    return bool(record.get("version")) and record.get("model_name") == name and record["version"] in (versions or [])


# ---------------------------------------------------------------- records and rows


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def cutoff_record(entry: dict[str, Any], *, kind: str, params: dict[str, Any], top_n: int, metrics: dict[str, Any],
                  run_id: str | None, seconds: float | None, status: str, version: str | None = None,
                  model_name: str | None = None, note: str | None = None, dataset: str = "",
                  snapshot: str = "") -> dict[str, Any]:
    """What is stored for one finished cutoff (small and JSON-able): the window, the sizes, the
    held-out metrics and baselines' RMSE, the run, the version and the status."""
    test = metrics.get("test") or {}
    return {
        "cutoff": entry["cutoff"], "until": entry["until"], "label": entry["label"], "split": entry["split"],
        "dataset": dataset, "snapshot": snapshot, "kind": kind, "params": params, "top_n": top_n,
        "n_train": entry["n_train"], "n_test": entry["n_test"],
        "metrics": {"test": {k: _finite(test.get(k)) for k in METRICS},
                    "baselines": {b: _finite(v.get("rmse")) for b, v in (metrics.get("baselines") or {}).items()}},
        "train_seconds": _finite(seconds), "run": run_id, "status": status, "version": version,
        "model_name": model_name, "note": note,
    }


def backfill_row(entry: dict[str, Any], record: dict[str, Any] | None, *, status: str | None = None,
                 note: str | None = None, reused: bool = False) -> dict[str, Any]:
    """One row (:data:`COLUMNS`) of a cutoff: from its stored/just-made ``record`` when it has one,
    else the planned ``entry`` with ``status`` (``failed``/``skipped``) and ``note``."""
    rec = record or {}
    status = status or rec.get("status") or entry.get("status")
    if status not in STATUSES:
        raise ValueError(f"status={status!r}: must be one of {', '.join(STATUSES)}")
    test = (rec.get("metrics") or {}).get("test") or {}
    base = (rec.get("metrics") or {}).get("baselines") or {}
    return {
        "cutoff": entry["label"], "window_end": format_instant(entry["until"]),
        "n_train": int(entry["n_train"]), "n_test": int(entry["n_test"]),
        "rmse": _finite(test.get("rmse")), "mae": _finite(test.get("mae")), "ndcg@10": _finite(test.get("ndcg@10")),
        "bias_rmse": _finite(base.get("bias")), "global_mean_rmse": _finite(base.get("global-mean")),
        "train_seconds": _finite(rec.get("train_seconds")), "status": status, "reused": bool(reused),
        "version": rec.get("version") if status in ("published", "rejected") else None,
        "note": note or rec.get("note") or entry.get("note") or None,
    }


def one_line_reason(exc: BaseException) -> str:
    """Why a step failed, on one line: a user error's own message; anything else ``Type: first line``."""
    from factorflow.errors import FactorflowError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, FactorflowError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def display_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` for a text table or a Prefect table artifact: metrics to 4 decimals, seconds to 1,
    the note left out (printed below the table)."""
    out = []
    for r in rows:
        d: dict[str, Any] = {"cutoff": r["cutoff"], "window end": r["window_end"], "train": f"{r['n_train']:,}",
                             "test": f"{r['n_test']:,}"}
        for k, label in (("rmse", "rmse"), ("mae", "mae"), ("ndcg@10", "ndcg@10"), ("bias_rmse", "bias rmse")):
            d[label] = None if r[k] is None else f"{r[k]:.4f}"
        d["train s"] = None if r["train_seconds"] is None else f"{r['train_seconds']:.1f}"
        d["status"] = r["status"] + (" (reused)" if r["reused"] else "")
        d["version"] = r["version"]
        out.append(d)
    return out


def finished(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with metrics (evaluated, published or rejected; reused or not)."""
    return [r for r in rows if r["status"] in FINISHED]


def exit_code(rows: list[dict[str, Any]]) -> int:
    """0 when every cutoff finished or was skipped; 3 when the only failures are publish-gate
    rejections; 2 when any cutoff failed."""
    statuses = {r["status"] for r in rows}
    return 2 if "failed" in statuses else 3 if "rejected" in statuses else 0


# ---------------------------------------------------------------- historical versions


def publish_historical(store: str, name: str, run: Any, metrics: dict[str, Any], snapshot: Any, split: Any,
                       partitions: Any, recommendations: str | None, item_titles: str | None,
                       rating_range: tuple[float, float], cutoff: dict[str, Any]) -> tuple[str, str, str | None]:
    """Publish a cutoff's run as a version of model ``name`` that never becomes CURRENT.

    ``model.json`` is :func:`factorflow.pipeline.publish.model_json`'s body with ``status:
    "historical"`` and ``cutoff: {at, until, label, split}``; a model the publish gate blocks
    is kept with ``status: "rejected"`` and its reasons instead. Returns ``(version, status,
    note)`` (``status``: ``published`` or ``rejected``; the note says why it was rejected).
    """
    from factorflow.evaluation.gate import publish_blockers
    from factorflow.pipeline.publish import model_json
    from factorflow.serving.network import SERVING_NETWORK, SERVING_TABLES
    from factorflow.serving.titles import titles_for
    from factorflow.storage.datasets import read_ids
    from factorflow.storage.layout import NETWORK_FILE
    from factorflow.storage.registry import publish
    from factorflow.storage.scratch import load_history, load_run_factors, load_run_network, read_run_table
    from factorflow.storage.splits import train_csr

    factors = load_run_factors(run)
    user_ids = read_ids(snapshot, "user").column("user_id")
    item_ids = read_ids(snapshot, "item").column("item_id")
    blockers = publish_blockers(metrics, factors, run.kind or "")
    network = load_run_network(run)
    body = model_json(run, factors, load_history(run), metrics, snapshot, split, partitions, rating_range, blockers,
                      SERVING_TABLES if network is None else SERVING_NETWORK)
    body["status"] = "rejected" if blockers else "historical"
    body["cutoff"] = {"at": format_instant(cutoff["cutoff"]), "until": format_instant(cutoff["until"]),
                      "timestamp": int(cutoff["cutoff"]), "until_timestamp": int(cutoff["until"]),
                      "split": cutoff["split"]}
    extra = {"recommendations": read_run_table(recommendations)} if recommendations else {}
    version = publish(store, name, factors, user_ids, item_ids, body, seen=train_csr(split),
                      item_titles=titles_for(item_titles, item_ids) if item_titles else None, extra_tables=extra,
                      extra_files={} if network is None else {NETWORK_FILE: network}, set_current=False)
    if blockers:
        return version, "rejected", f"publish gate: {'; and '.join(blockers)}; kept as rejected version {version}"
    return version, "published", None


# ---------------------------------------------------------------- composing: store → plan, rows → store


def plan_backfill(store: str, snapshot: Any, start: str | date | datetime, end: str | date | datetime, every: str,
                  config: Any, top_n: int, *, publish: bool = False, name: str | None = None) -> dict[str, Any]:
    """The plan of a backfill of ``config``'s model over ``snapshot``: ``{"backfill_id", "entries",
    "dataset", "snapshot"}``, one entry per cutoff (:func:`plan`); an entry whose stored result
    may be reused (:func:`reusable`) carries it as ``record`` and has status ``reused``.

    Reads only the snapshot's timestamps and the stored cutoffs. ParameterErrors as
    :func:`windows_from_request` and :func:`check_against_data`.
    """
    from factorflow.models.base import config_params
    from factorflow.models.registry import as_config
    from factorflow.storage.backfills import read_cutoff_result
    from factorflow.storage.registry import list_versions
    from factorflow.storage.splits import open_snapshot, read_snapshot_timestamps

    config = as_config(config)
    params = config_params(config)
    wins = windows_from_request(start, end, every)
    source = open_snapshot(snapshot)
    entries = plan(read_snapshot_timestamps(source), source.manifest, wins, dataset=source.dataset,
                   snapshot=source.snapshot, kind=config.kind, params=params, top_n=top_n)
    versions = list_versions(store, name) if publish and name else None
    for e in entries:
        if e["status"] != "planned":
            continue
        record = read_cutoff_result(store, e["key"])
        if reusable(record, publish, name, versions):
            e["status"], e["record"] = "reused", record
    return {"backfill_id": backfill_id(source.dataset, source.snapshot, config.kind, params, wins, top_n),
            "entries": entries, "dataset": source.dataset, "snapshot": source.snapshot}


def save_backfill(store: str, backfill_id_: str, rows: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """Plot ``rows`` (:func:`factorflow.evaluation.plots.backfill_png`) and write the table, the
    plot and ``info`` under ``STORE/backfills/ID/``; returns the files' URLs (``json``,
    ``parquet``, ``png``)."""
    from factorflow.evaluation.plots import backfill_png
    from factorflow.storage.backfills import write_backfill

    title = f"{info.get('kind', '')} backfill on {info.get('dataset', '')} (every {info.get('every', '')})".strip()
    png = backfill_png(rows, title=title) if finished(rows) else None
    return write_backfill(store, backfill_id_, rows, info, columns=list(COLUMNS), plot_png=png)
