"""Publish a run: ``model.json`` is assembled here, and only here, then the registry writes the version.

The body (kind, params, dataset, split, metrics, learning curve, provenance, gate status,
challenge) comes from :func:`model_json`; :func:`factorflow.storage.registry.publish` adds only
the facts of the stored tables (version, name, created_at, rank, global_mean, n_users, n_items,
tables, files). Two checks decide whether the new version becomes CURRENT:

1. the publish gate (:func:`factorflow.evaluation.gate.publish_blockers`): nothing degenerate;
2. then champion/challenger (:func:`factorflow.pipeline.champion.challenge_current`, with the
   run's :class:`~factorflow.config.PublishOptions`): not worse than CURRENT on the same test
   data beyond the tolerances. Its record is ``model.json["challenge"]``.

A version that fails either is kept, marked ``"status": "rejected"`` with ``rejected_because``,
CURRENT is left alone, and :class:`~factorflow.errors.ModelRejectedError` says why in one line.
After the publish, ``keep_versions`` prunes old versions (never CURRENT nor its rollback target).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factorflow import __version__
from factorflow.config import PublishOptions
from factorflow.errors import ModelRejectedError
from factorflow.evaluation.gate import publish_blockers
from factorflow.factors import FactorArrays
from factorflow.pipeline.champion import challenge_current
from factorflow.serving.network import SERVING_NETWORK, SERVING_TABLES
from factorflow.storage.datasets import SnapshotRef, read_ids
from factorflow.storage.layout import NETWORK_FILE
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.registry import named_current, prune_versions, publish
from factorflow.storage.runs import RunRef
from factorflow.storage.scratch import load_history, load_run_factors, load_run_network, read_run_table
from factorflow.storage.splits import SplitRef, train_csr

#: ``model.json`` keys written here (the registry adds its own; see its module docstring).
BODY_KEYS = ("kind", "params", "global_mean", "rating_range", "dataset", "split", "partitions", "dask_workers",
             "metrics", "learning_curve", "code_version", "status", "serving", "challenge")


def code_version() -> str:
    """The package version plus the git commit when running from a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def model_json(run: RunRef, factors: FactorArrays, history: list[dict[str, Any]], metrics: dict[str, Any],
               snapshot: SnapshotRef, split: SplitRef, partitions: PartitionsRef | None,
               rating_range: tuple[float, float], blockers: list[str], serving: str = SERVING_TABLES,
               challenge: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of ``model.json`` for a trained run (stable keys: see the registry's docstring);
    ``serving`` says whether the tables' dot product or the published network scores it;
    ``challenge`` is the champion/challenger record (absent when the gate rejected it first)."""
    body: dict[str, Any] = {
        "kind": run.kind,
        "params": run.params,
        "global_mean": factors.global_mean,
        "rating_range": list(rating_range),
        "dataset": {"name": snapshot.name, "snapshot": snapshot.snapshot, "source": snapshot.manifest.get("source")},
        "split": {"id": split.split, **{k: split.manifest.get(k) for k in
                                       ("kind", "params", "seed", "n_train", "n_test", "n_test_cold")}},
        "partitions": None if partitions is None else {"n_blocks": partitions.manifest["n_blocks"]},
        "dask_workers": run.dask_workers,
        "metrics": {k: v for k, v in metrics.items() if k != "learning_curve_png"},
        "learning_curve": history,
        "code_version": code_version(),
        "status": "rejected" if blockers else "published",
        "serving": serving,
    }
    if run.fit:  # only kinds that report something (BPMF: kept samples, thinning); ALS's keys are unchanged
        body["fit"] = run.fit
    if challenge is not None:
        body["challenge"] = challenge
    if blockers:
        body["rejected_because"] = blockers
    return body


def _titles(path: str | None, item_ids: Any) -> Any:
    """Titles aligned with ``item_ids`` from a MovieLens-style movies.csv (movieId,title), or None."""
    if not path:
        return None
    from factorflow.serving.titles import titles_for

    return titles_for(path, item_ids)


@dataclass
class PublishOutcome:
    """What a publish did: the ``version`` written, whether it became CURRENT (``accepted``), why
    (``reason``: the gate's or the challenge's reasons, one line), the ``challenge`` record, what
    CURRENT names now, and the versions retention deleted (``prune_error``: why it could not)."""

    name: str
    version: str
    accepted: bool
    reason: str
    challenge: dict[str, Any] | None = None
    current: str | None = None
    pruned: list[str] = field(default_factory=list)
    prune_error: str | None = None

    def error(self) -> ModelRejectedError:
        """The one-line error of a rejected version."""
        current = f"CURRENT still names {self.current}" if self.current else "there is no CURRENT version"
        return ModelRejectedError(f"model {self.name} was not published: {self.reason}; kept as rejected "
                                  f"version {self.version}, {current}")


def publish_decided(store: str, name: str, run: RunRef, metrics: dict[str, Any], snapshot: SnapshotRef,
                    split: SplitRef, partitions: PartitionsRef | None, recommendations: str | None,
                    item_titles: str | None, rating_range: tuple[float, float],
                    options: PublishOptions | None = None) -> PublishOutcome:
    """Publish the run as a new version of model ``name``: the gate, then the challenge against
    CURRENT (``options``; default :class:`~factorflow.config.PublishOptions`), decide whether it
    becomes CURRENT; the version is written either way; then retention. Never raises for a
    rejection (see :meth:`PublishOutcome.error`)."""
    options = options or PublishOptions()
    factors = load_run_factors(run)
    user_ids = read_ids(snapshot, "user").column("user_id")
    item_ids = read_ids(snapshot, "item").column("item_id")
    extra = {"recommendations": read_run_table(recommendations)} if recommendations else {}
    blockers = publish_blockers(metrics, factors, run.kind or "")
    challenge = None
    if not blockers:
        challenge = challenge_current(store, name, metrics, snapshot, split, rating_range, options)
        if challenge["decision"] == "rejected":
            blockers = [challenge["reason"]]
    network = load_run_network(run)
    body = model_json(run, factors, load_history(run), metrics, snapshot, split, partitions, rating_range, blockers,
                      SERVING_TABLES if network is None else SERVING_NETWORK, challenge)
    reason = "; and ".join(blockers) if blockers else challenge["reason"]
    version = publish(store, name, factors, user_ids, item_ids, body, seen=train_csr(split),
                      item_titles=_titles(item_titles, item_ids), extra_tables=extra,
                      extra_files={} if network is None else {NETWORK_FILE: network}, set_current=not blockers,
                      reason=reason)
    outcome = PublishOutcome(name, version, not blockers, reason, challenge, named_current(store, name))
    if options.keep_versions:
        try:
            outcome.pruned = prune_versions(store, name, options.keep_versions)
        except OSError as exc:  # housekeeping: the publish itself stands
            outcome.prune_error = f"{type(exc).__name__}: {exc}"
    return outcome


def publish_run(store: str, name: str, run: RunRef, metrics: dict[str, Any], snapshot: SnapshotRef,
                split: SplitRef, partitions: PartitionsRef | None, recommendations: str | None,
                item_titles: str | None, rating_range: tuple[float, float],
                options: PublishOptions | None = None) -> str:
    """:func:`publish_decided`, raising ModelRejectedError (after keeping the version) when the
    gate or the challenge rejects it. Returns the version."""
    outcome = publish_decided(store, name, run, metrics, snapshot, split, partitions, recommendations, item_titles,
                              rating_range, options)
    if not outcome.accepted:
        raise outcome.error()
    return outcome.version
