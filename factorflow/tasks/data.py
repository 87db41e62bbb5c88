"""Prefect tasks for the data layer: ingest, split, partition. Thin wrappers; typed store references out.

Each returns a :class:`~factorflow.storage.datasets.SnapshotRef`, :class:`~factorflow.storage.splits.SplitRef`
or :class:`~factorflow.storage.partitions.PartitionsRef` (a path and a small manifest), persisted
as JSON so a re-run of the same request shows ``Cached``. The cache key is the store folder the
step writes (content-addressed or named by its parameters), and a cached result is reused only
while that folder exists: a deleted snapshot, split or partition set is rebuilt, never served.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from factorflow.config import IngestOptions, RetrainParams, SplitOptions
from factorflow.storage.datasets import SnapshotRef
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error, stable_key, task_progress

CACHE_VERSION = "refs-v2"  # results are typed refs (v1 cached plain dicts): never serve a v1 entry


def _ingest_key(context: Any, p: dict[str, Any]) -> str:
    """The planned snapshot folder (content-addressed) and the options."""
    return stable_key("ingest", CACHE_VERSION, p["planned"], p["options"].model_dump())


def ingest(source: str, store: str, options: IngestOptions) -> SnapshotRef:
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
def ingest_task(source: str, store: str, options: IngestOptions, planned: str = "") -> SnapshotRef:
    """Ingest ``source`` into a content-addressed snapshot. ``planned`` (the snapshot folder it
    will have) only keys the cache; see :func:`ingest`."""
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
    return ref


def _split_id(o: SplitOptions) -> str:
    from factorflow.data.splits import split_id

    return split_id(o.kind, test_fraction=o.test_fraction, seed=o.seed, cutoff=o.cutoff, per_user=o.per_user,
                    k=o.k, by=o.by)


def _split_key(context: Any, p: dict[str, Any]) -> str:
    """The split folder: the snapshot and the split id (kind, parameters and seed)."""
    return stable_key("split", CACHE_VERSION, p["snapshot"].path, _split_id(p["options"]))


def split(snapshot: SnapshotRef, options: SplitOptions) -> SplitRef:
    """Run :func:`split_task`, reusing its cached result only while that split exists."""
    from factorflow.storage.splits import find_split, open_snapshot

    exists = find_split(open_snapshot(snapshot), _split_id(options)) is not None
    return split_task.with_options(refresh_cache=not exists)(snapshot, options)


@task(name="split", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_split_key, persist_result=True, result_serializer="json")
def split_task(snapshot: SnapshotRef, options: SplitOptions) -> SplitRef:
    """Make (or reuse) the named split of a snapshot."""
    from factorflow.data.splits import make_split

    return make_split(snapshot, options.kind, test_fraction=options.test_fraction, seed=options.seed,
                      cutoff=options.cutoff, per_user=options.per_user, k=options.k, by=options.by)


def _n_blocks(split: SplitRef, n_blocks: int | None) -> int:
    from factorflow.data.partitions import default_n_blocks

    return n_blocks or default_n_blocks(int(split.manifest["n_train"]))


def _partition_key(context: Any, p: dict[str, Any]) -> str:
    """The partition folder: the split and the block count."""
    return stable_key("partition", CACHE_VERSION, p["split"].path, _n_blocks(p["split"], p["n_blocks"]))


def partition(split: SplitRef, n_blocks: int | None = None) -> PartitionsRef:
    """Run :func:`partition_task`, reusing its cached result only while those partitions exist."""
    from factorflow.storage.partitions import find_partitions

    exists = find_partitions(split.path, _n_blocks(split, n_blocks)) is not None
    return partition_task.with_options(refresh_cache=not exists)(split, n_blocks)


@task(name="partition", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_partition_key, persist_result=True, result_serializer="json")
def partition_task(split: SplitRef, n_blocks: int | None = None) -> PartitionsRef:
    """Build (or reuse) the user/item row blocks of a split's train part."""
    from factorflow.data.partitions import build_partitions

    return build_partitions(split, n_blocks, progress=task_progress("partition", "blocks"))


def ingest_and_split(source: str, store: str, params: RetrainParams) -> tuple[SnapshotRef, SplitRef]:
    """The data steps every training flow starts with: ingest ``source`` (dataset name defaulting to
    its stem), then split it — the ``given`` split whenever a test source was ingested with it."""
    from prefect import get_run_logger

    from factorflow.data.ingest import default_name

    ingest_opts = params.ingest.model_copy(update={"dataset": params.ingest.dataset or default_name(source)})
    split_opts = params.split
    if ingest_opts.test_source and split_opts.kind != "given":
        split_opts = split_opts.model_copy(update={"kind": "given"})
        get_run_logger().info("a test source was given: using the 'given' split")
    snapshot = ingest(source, store, ingest_opts)
    return snapshot, split(snapshot, split_opts)
