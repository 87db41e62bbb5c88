"""The retrain job's pipeline parameters: one validated object from CLI to flow to tasks.

The CLI builds :class:`RetrainParams`, the Prefect flow takes it as a typed parameter
(Prefect validates it and shows it in the UI), and a deployment's ``parameters:`` sets the
same fields. The model and its hyper-parameters are not here: they are the model's own typed
config (:mod:`factorflow.models.registry`), the flow's ``model`` parameter, so defaults and
validation live in exactly one place, the model's module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SplitKind = Literal["random", "temporal", "user-holdout", "given"]


class IngestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(None, description="dataset name in the store (default: source file stem)")
    format: str | None = Field(None, description="movielens-csv | ml100k | ml1m | delimited (default: detect)")
    columns: dict[str, str] | None = Field(None, description="for --format delimited: user/item/rating/timestamp")
    delimiter: str | None = Field(None, description="field delimiter for --format delimited (default: guessed)")
    rating_range: tuple[float, float] | None = None
    max_reject_fraction: float = Field(0.01, ge=0.0, le=1.0)
    test_source: str | None = Field(None, description="a second file with the test ratings (split 'given')")


class SplitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SplitKind = "random"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 42
    cutoff: int | None = None
    per_user: bool = False
    k: int = Field(1, ge=1)
    by: Literal["time", "random"] = "time"


class ComputeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dask_address: str | None = Field(None, description="tcp://HOST:PORT of a running scheduler")
    n_workers: int | None = Field(None, ge=1, description="LocalCluster worker processes")
    n_blocks: int | None = Field(None, ge=1, description="partition blocks P (default: from nnz)")
    device: Literal["cpu", "gpu"] = Field(
        "cpu", description="gpu: train a Keras model on a Dask worker started with --resources GPU=1")


class PublishOptions(BaseModel):
    """Champion/challenger and retention: how a new version may replace CURRENT."""

    model_config = ConfigDict(extra="forbid")

    challenge: bool = Field(True, description="compare with CURRENT on the same test data before switching")
    rmse_tolerance: float = Field(0.005, ge=0.0, description="the challenger's test RMSE may exceed CURRENT's by this")
    ndcg_tolerance: float = Field(0.02, ge=0.0,
                                  description="the challenger's NDCG@10 may fall short of CURRENT's by this")
    keep_versions: int | None = Field(None, ge=2,
                                      description="keep the newest K versions (never CURRENT or its predecessor)")


class RetrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ingest: IngestOptions = IngestOptions()
    split: SplitOptions = SplitOptions()
    compute: ComputeOptions = ComputeOptions()
    top_n: int = Field(10, ge=1, description="N for top-N metrics and batch recommendations")
    item_titles: str | None = Field(None, description="a movies.csv (movieId,title) to publish titles")
    publish: PublishOptions = PublishOptions()
    warm_start: bool = Field(False, description="initialise the fit from CURRENT's factors, matched by raw id")
