"""The ingest flow: a ratings file → a dataset snapshot (a no-op for bytes already ingested)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from factorflow.config import IngestOptions
from factorflow.tasks.data import ingest


@flow(name="ingest")
def ingest_flow(source: str, store: str = "ff-store", options: IngestOptions = IngestOptions()) -> dict[str, Any]:
    """Ingest ``source`` into ``store``; returns the snapshot's reference as a dict (store, name,
    snapshot, path, manifest, reused)."""
    from factorflow.data.ingest import default_name

    opts = options.model_copy(update={"dataset": options.dataset or default_name(source)})
    return ingest(source, store, opts).to_dict()
