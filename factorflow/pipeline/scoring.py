"""The scorer of a trained run: its network for a kind served by one, else its factor tables."""

from __future__ import annotations

from typing import Any

from factorflow.storage.layout import NETWORK_FILE
from factorflow.storage.runs import RunRef
from factorflow.storage.scratch import load_run_factors, load_run_network


def run_scorer(run: RunRef, factors: Any = None) -> Any:
    """A :class:`~factorflow.serving.scoring.Scorer` of the run's fit (``factors``: its arrays if
    already loaded): a :class:`~factorflow.serving.network.NetworkScorer` when the run saved a
    network (keras-deep, keras-residual), else the :class:`~factorflow.factors.FactorArrays`."""
    factors = load_run_factors(run) if factors is None else factors
    data = load_run_network(run)
    if data is None:
        return factors
    from factorflow.serving.network import NetworkScorer, network_from_bytes

    return NetworkScorer(network_from_bytes(data, run.file(NETWORK_FILE)), factors.n_users, factors.n_items,
                         factors.global_mean)
