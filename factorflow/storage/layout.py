"""Where things live in a store. The one place that spells out store paths.

::

    STORE/sources/                                   generated source files (``factorflow demo``)
    STORE/datasets/NAME/SNAPSHOT/                    one ingested source (content-addressed)
        ratings.parquet users.parquet items.parquet rejects.parquet manifest.json
        [given_test.parquet]                         test rows of a two-file (train/test) ingest
        splits/SPLIT/                                one named split of the snapshot
            train.parquet test.parquet manifest.json
            partitions/p{P}/                         P row blocks by user and by item
                partitions.json user_000.npz ... item_000.npz
    STORE/models/NAME/versions/VERSION/              one published model version
        user_factors.parquet item_factors.parquet seen.parquet recommendations.parquet model.json
        [network.keras]                              the network of a kind served by it (keras-deep, -residual)
    STORE/models/NAME/CURRENT                        text file naming the published VERSION
    STORE/models/NAME/history.json                   every change of CURRENT (publish, promote, rollback, set-current)
    STORE/runs/RUN/                                  one flow run's scratch: owner.json, factors.npz, history.json,
                                                     trained.json, metrics.json, learning_curve.png,
                                                     recommendations.parquet, [network.keras]
                                                     [blend_validation*.npz blend_fit_part/ component-K-KIND/]
    STORE/leaderboards/SPLIT/STAMP.json              one ``compare`` run's leaderboard on split SPLIT (STAMP: UTC
    STORE/leaderboards/SPLIT/STAMP.parquet           time); the JSON, written last, lists the Parquet's checksum
    STORE/backfills/ID/                              one ``backfill``: backfill.json backfill.parquet metrics.png
    STORE/backfills/cutoffs/KEY.json                 one finished backfill cutoff (reused by a re-run)
"""

from __future__ import annotations

from factorflow.storage.fs import join

# ---------------------------------------------------------------- file names

#: The manifest of a snapshot folder and of a split folder (written last).
MANIFEST_FILE = "manifest.json"
RATINGS_FILE = "ratings.parquet"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
REJECTS_FILE = "rejects.parquet"
GIVEN_TEST_FILE = "given_test.parquet"
TRAIN_FILE = "train.parquet"
TEST_FILE = "test.parquet"
#: The manifest of a partition set (written last).
PARTITIONS_MANIFEST_FILE = "partitions.json"


def block_file(side: str, b: int) -> str:
    """File name of row block ``b`` of ``side`` (``user`` or ``item``) in a partition folder."""
    return f"{side}_{b:03d}.npz"


# ---------------------------------------------------------------- sources and datasets


def sources_dir(root: str) -> str:
    return join(root, "sources")


def datasets_dir(root: str) -> str:
    return join(root, "datasets")


def dataset_dir(root: str, name: str) -> str:
    return join(datasets_dir(root), name)


def snapshot_dir(root: str, name: str, snapshot: str) -> str:
    return join(dataset_dir(root, name), snapshot)


def snapshot_file(snapshot_path: str, filename: str) -> str:
    """``filename`` (one of the ``*_FILE`` names above) inside a snapshot folder."""
    return join(snapshot_path, filename)


# ---------------------------------------------------------------- splits and partitions


def splits_dir(snapshot_path: str) -> str:
    return join(snapshot_path, "splits")


def split_dir(snapshot_path: str, split: str) -> str:
    return join(splits_dir(snapshot_path), split)


def split_manifest(split_path: str) -> str:
    return join(split_path, MANIFEST_FILE)


def split_train_file(split_path: str) -> str:
    return join(split_path, TRAIN_FILE)


def split_test_file(split_path: str) -> str:
    return join(split_path, TEST_FILE)


def partitions_dir(split_path: str, n_blocks: int) -> str:
    return join(split_path, "partitions", f"p{n_blocks}")


def partitions_manifests_glob(split_path: str) -> str:
    """A glob matching the manifest of every partition set of a split folder."""
    return join(split_path, "partitions", "p*", PARTITIONS_MANIFEST_FILE)


def partitions_manifest(partitions_path: str) -> str:
    return join(partitions_path, PARTITIONS_MANIFEST_FILE)


def block_path(partitions_path: str, side: str, b: int) -> str:
    return join(partitions_path, block_file(side, b))


# ---------------------------------------------------------------- models and runs


def models_dir(root: str) -> str:
    return join(root, "models")


def model_dir(root: str, name: str) -> str:
    return join(models_dir(root), name)


def versions_dir(root: str, name: str) -> str:
    return join(model_dir(root, name), "versions")


def version_dir(root: str, name: str, version: str) -> str:
    return join(versions_dir(root, name), version)


def current_file(root: str, name: str) -> str:
    return join(model_dir(root, name), "CURRENT")


def history_file(root: str, name: str) -> str:
    """``STORE/models/NAME/history.json``: the log of CURRENT's changes (replaced atomically, never appended)."""
    return join(model_dir(root, name), "history.json")


#: Files of a run's scratch folder (what the tasks of one flow run hand each other).
RUN_FACTORS = "factors.npz"
RUN_HISTORY = "history.json"
RUN_TRAINED = "trained.json"
RUN_METRICS = "metrics.json"
RUN_CURVE = "learning_curve.png"
RUN_RECOMMENDATIONS = "recommendations.parquet"
#: The Keras network of a kind whose r̂ is not a dot product (NetworkScored), in a run and in a version.
NETWORK_FILE = "network.keras"
#: A blend's run folder also holds its validation slice (users, items, ratings), each component's
#: predictions of it, TRAIN minus the slice as partition blocks (``.../partitions/pP/``) and each
#: component's full-TRAIN fit as a run folder of its own (``pipeline/blend.py``).
RUN_BLEND_VALIDATION = "blend_validation.npz"
RUN_BLEND_PREDICTIONS = "blend_validation_{index}.npz"
RUN_BLEND_FIT_PART = "blend_fit_part"
RUN_BLEND_COMPONENT = "component-{index}-{kind}"


def runs_dir(root: str) -> str:
    return join(root, "runs")


def run_dir(root: str, run_id: str) -> str:
    return join(runs_dir(root), run_id)


# ---------------------------------------------------------------- leaderboards (``factorflow compare``)


def leaderboards_dir(root: str) -> str:
    return join(root, "leaderboards")


def leaderboard_dir(root: str, split: str) -> str:
    """The leaderboards of every ``compare`` run on split ``split``."""
    return join(leaderboards_dir(root), split)


def leaderboard_file(root: str, split: str, stamp: str, ext: str) -> str:
    """``STORE/leaderboards/SPLIT/STAMP.EXT`` (``ext``: ``json`` or ``parquet``)."""
    return join(leaderboard_dir(root, split), f"{stamp}.{ext}")


# ---------------------------------------------------------------- backfills (``factorflow backfill``)
#
#   STORE/backfills/ID/backfill.json       one backfill's table of cutoffs (JSON written last, strict; lists
#   STORE/backfills/ID/backfill.parquet    the Parquet's and the PNG's checksums); ID: dataset, kind and a
#   STORE/backfills/ID/metrics.png         hash of the request, so a re-run replaces its own files
#   STORE/backfills/cutoffs/KEY.json       one finished cutoff's result (metrics, sizes, run, version), KEY
#                                          content-addressed from (snapshot, split id, model config, top_n)

BACKFILL_JSON = "backfill.json"
BACKFILL_PARQUET = "backfill.parquet"
BACKFILL_PLOT = "metrics.png"


def backfills_dir(root: str) -> str:
    return join(root, "backfills")


def backfill_dir(root: str, backfill_id: str) -> str:
    """The table and plot of one backfill (``backfill_id`` never equals ``cutoffs``: it holds a ``-``)."""
    return join(backfills_dir(root), backfill_id)


def backfill_file(root: str, backfill_id: str, name: str) -> str:
    """``name`` (``BACKFILL_JSON``, ``BACKFILL_PARQUET``, ``BACKFILL_PLOT``) of one backfill."""
    return join(backfill_dir(root, backfill_id), name)


def backfill_cutoffs_dir(root: str) -> str:
    """The finished cutoffs every backfill of the store may reuse."""
    return join(backfills_dir(root), "cutoffs")


def backfill_cutoff_file(root: str, key: str) -> str:
    return join(backfill_cutoffs_dir(root), f"{key}.json")
