"""Prefect tasks for the data layer: ingest, split, partition. Thin wrappers, small manifests out."""

from __future__ import annotations

from typing import Any

from prefect import task

from factorflow.config import IngestOptions, SplitOptions
from factorflow.tasks._prefect import retry_on_io_error, stable_key, task_progress


def _ingest_key(context: Any, p: dict[str, Any]) -> str:
    """The planned snapshot folder (content-addressed) and the options."""
    return stable_key("ingest", p["planned"], p["options"].model_dump())


def ingest(source: str, store: str, options: IngestOptions) -> dict[str, Any]:
    """Run :func:`ingest_task`, reusing its cached result only while that snapshot exists.

    The cache key is the planned (content-addressed) snapshot path, so a second run of the
    same bytes shows ``Cached``; a deleted snapshot refreshes the cache instead of serving it.
    """
    from factorflow.data.ingest import planned_snapshot

    o = options
    plan = planned_snapshot(source, store, o.dataset, fmt=o.format, columns=o.columns, delimiter=o.delimiter,
                            rating_range=o.rating_range, test_source=o.test_source)
    return ingest_task.with_options(refresh_cache=not plan.exists)(source, store, options, plan.path)


@task(name="ingest", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_ingest_key, persist_result=True, result_serializer="json")
def ingest_task(source: str, store: str, options: IngestOptions, planned: str = "") -> dict[str, Any]:
    """Ingest ``source`` into a content-addressed snapshot; returns the SnapshotRef as a dict.
    ``planned`` (the snapshot folder it will have) only keys the cache; see :func:`ingest`."""
    from prefect import get_run_logger

    from factorflow.data.ingest import describe_rejects, ingest_source

    ref = ingest_source(
        source, store, options.dataset, fmt=options.format, columns=options.columns, delimiter=options.delimiter,
        rating_range=options.rating_range, max_reject_fraction=options.max_reject_fraction,
        test_source=options.test_source, progress=task_progress("ingest", "B"),
    )
    note = describe_rejects(ref)
    if note:
        get_run_logger().warning("ingest: %s", note)
    return ref.to_dict()


def _split_path(snapshot: dict[str, Any], o: SplitOptions) -> str:
    from factorflow.data.splits import split_id
    from factorflow.storage.layout import split_dir

    sid = split_id(o.kind, test_fraction=o.test_fraction, seed=o.seed, cutoff=o.cutoff, per_user=o.per_user,
                   k=o.k, by=o.by)
    return split_dir(snapshot["path"], sid)


def _split_key(context: Any, p: dict[str, Any]) -> str:
    """The split folder (named by snapshot, kind, parameters and seed)."""
    return stable_key("split", _split_path(p["snapshot"], p["options"]))


def split(snapshot: dict[str, Any], options: SplitOptions) -> dict[str, Any]:
    """Run :func:`split_task`, reusing its cached result only while that split exists."""
    from factorflow.storage.fs import open_store
    from factorflow.storage.layout import split_manifest

    fs, _ = open_store(snapshot["store"])  # the snapshot's path is on the store's filesystem
    exists = fs.exists(split_manifest(_split_path(snapshot, options)))
    return split_task.with_options(refresh_cache=not exists)(snapshot, options)


@task(name="split", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_split_key, persist_result=True, result_serializer="json")
def split_task(snapshot: dict[str, Any], options: SplitOptions) -> dict[str, Any]:
    """Make (or reuse) the named split of a snapshot; returns the SplitRef as a dict."""
    from factorflow.data.splits import make_split
    from factorflow.storage.datasets import SnapshotRef

    ref = make_split(
        SnapshotRef.from_dict(snapshot), options.kind, test_fraction=options.test_fraction,
        seed=options.seed, cutoff=options.cutoff, per_user=options.per_user, k=options.k, by=options.by,
    )
    return ref.to_dict()


def _partitions_path(split: dict[str, Any], n_blocks: int | None) -> tuple[Any, str]:
    from factorflow.data.partitions import default_n_blocks
    from factorflow.storage.fs import open_store
    from factorflow.storage.layout import partitions_dir

    n_blocks = n_blocks or default_n_blocks(int(split["manifest"]["n_train"]))
    fs, split_path = open_store(split["path"])
    return fs, partitions_dir(split_path, n_blocks)


def _partition_key(context: Any, p: dict[str, Any]) -> str:
    """The partition folder (named by split and block count)."""
    return stable_key("partition", _partitions_path(p["split"], p["n_blocks"])[1])


def partition(split: dict[str, Any], n_blocks: int | None = None) -> dict[str, Any]:
    """Run :func:`partition_task`, reusing its cached result only while those partitions exist."""
    from factorflow.storage.layout import partitions_manifest

    fs, path = _partitions_path(split, n_blocks)
    exists = fs.exists(partitions_manifest(path))
    return partition_task.with_options(refresh_cache=not exists)(split, n_blocks)


@task(name="partition", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_partition_key, persist_result=True, result_serializer="json")
def partition_task(split: dict[str, Any], n_blocks: int | None = None) -> dict[str, Any]:
    """Build (or reuse) the user/item row blocks of a split's train part; returns PartitionsRef as a dict."""
    from factorflow.data.partitions import build_partitions
    from factorflow.storage.splits import SplitRef

    ref = build_partitions(SplitRef.from_dict(split), n_blocks, progress=task_progress("partition", "blocks"))
    return ref.to_dict()
