"""Where things live in a store. The one place that spells out store paths.

::

    STORE/datasets/NAME/SNAPSHOT/                    one ingested source (content-addressed)
        ratings.parquet users.parquet items.parquet rejects.parquet manifest.json
        [given_test.parquet]                         test rows of a two-file (train/test) ingest
        splits/SPLIT/                                one named split of the snapshot
            train.parquet test.parquet manifest.json
            partitions/p{P}/                         P row blocks by user and by item
                partitions.json user_000.npz ... item_000.npz
    STORE/models/NAME/versions/VERSION/              one published model version
        user_factors.parquet item_factors.parquet seen.parquet recommendations.parquet model.json
    STORE/models/NAME/CURRENT                        text file naming the published VERSION
    STORE/runs/RUN/                                  one flow run's scratch: factors.npz, history.json,
                                                     metrics.json, learning_curve.png, recommendations.parquet
"""

from __future__ import annotations

from factorflow.storage.fs import join


def dataset_dir(root: str, name: str) -> str:
    return join(root, "datasets", name)


def snapshot_dir(root: str, name: str, snapshot: str) -> str:
    return join(root, "datasets", name, snapshot)


def split_dir(snapshot_path: str, split: str) -> str:
    return join(snapshot_path, "splits", split)


def partitions_dir(split_path: str, n_blocks: int) -> str:
    return join(split_path, "partitions", f"p{n_blocks}")


def model_dir(root: str, name: str) -> str:
    return join(root, "models", name)


def version_dir(root: str, name: str, version: str) -> str:
    return join(root, "models", name, "versions", version)


def current_file(root: str, name: str) -> str:
    return join(root, "models", name, "CURRENT")


def runs_dir(root: str) -> str:
    return join(root, "runs")


def run_dir(root: str, run_id: str) -> str:
    return join(root, "runs", run_id)
