"""Batch top-N for every user of a run, with the candidate filter ``factorflow recommend`` uses."""

from __future__ import annotations

import numpy as np

from factorflow.pipeline.scoring import run_scorer
from factorflow.progress import Progress
from factorflow.serving.candidates import candidate_mask
from factorflow.serving.topn import attach_raw_ids, recommend_all
from factorflow.storage import layout
from factorflow.storage.datasets import SnapshotRef, read_ids
from factorflow.storage.runs import RunRef
from factorflow.storage.scratch import write_run_table
from factorflow.storage.splits import SplitRef, train_csr


def batch_recommend(run: RunRef, split: SplitRef, snapshot: SnapshotRef, n: int = 10,
                    progress: Progress | None = None) -> tuple[str, int]:
    """Top-``n`` unseen, allowed items for every user → the run's ``recommendations.parquet``.

    Returns (its URL, the number of users with recommendations)."""
    seen = train_csr(split)
    allowed = candidate_mask(np.bincount(seen.indices, minlength=seen.shape[1]))  # as `recommend` does
    recs = recommend_all(run_scorer(run), seen, n, allowed=allowed, progress=progress)
    recs = attach_raw_ids(recs, read_ids(snapshot, "user").column("user_id"),
                          read_ids(snapshot, "item").column("item_id"))
    users = recs.column("user_idx").to_numpy()  # grouped by user: count the changes
    n_users = int(users.size and 1 + np.count_nonzero(users[1:] != users[:-1]))
    return write_run_table(run, layout.RUN_RECOMMENDATIONS, recs), n_users
