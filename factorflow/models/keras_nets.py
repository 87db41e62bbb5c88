"""Keras deep and residual recommenders (spec §§12–13): r̂ is a network, not a dot product.

Both kinds embed user i as w_i ∈ ℝᴷ and item j as u_j ∈ ℝᴷ and predict the centred rating
r − μ (μ = train mean, not learned):

- ``keras-deep`` (§12): r̂_ij − μ = MLP([w_i; u_j]), where MLP is Dense layers of the configured
  ``hidden`` widths with activation σ (and dropout after each while training), then a linear
  Dense(1): h₀ = [w_i; u_j], h_l = σ(A_l h_{l−1} + a_l), MLP = vᵀh_L + v₀.
- ``keras-residual`` (§13): the MF branch of keras-mf plus that MLP on the same embeddings,
  added: r̂_ij − μ = w_iᵀu_j + b_i + c_j + MLP([w_i; u_j]) — the MLP learns what MF's linear
  model leaves (its residual).

Each minibatch B minimizes the mean over its ratings of

    (r_ij − r̂_ij)² + λ (‖w_i‖² + ‖u_j‖² [+ b_i² + c_j²  residual])  +  α (Σ_l ‖A_l‖²_F + ‖v‖²)

(L2 λ = ``reg`` on the embedding rows the batch uses, as keras-mf; α = ``weight_decay`` on every
Dense kernel, the output's v included, added once per batch; ``dropout`` zeroes each hidden unit
with that probability while training), with the shared training options of
:class:`~factorflow.models._keras_fit.KerasTraining`: ``validation_fraction`` of the TRAIN
ratings (a seeded shuffle; never the test split) is held out, and the epoch with the best
validation RMSE is kept (``patience``).

Rows never seen by the fit have zero embeddings (and zero biases) from the start — they receive
no gradient, so they stay zero — in the network and in the exported tables alike; such a user
is scored as MLP([0; u_j]) (+ c_j for the residual). :meth:`factors` exports the embeddings as
:class:`~factorflow.factors.FactorArrays` (user/item tables as factors; the residual's MF-branch
biases, zeros for deep; μ); they are published beside the network's ``.keras`` file but do not
predict by themselves: :meth:`network` (the :class:`~factorflow.models.base.NetworkScored`
capability) does. No fold-in: a new user's embedding would need the network in the solve.

Keras 3 code using only ``keras`` and ``keras.ops``: TensorFlow is the default backend, and the
same code runs on JAX (``KERAS_BACKEND=jax``). Keras is imported inside the functions, so the
registry and ``--help`` never import TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from factorflow.errors import check_param
from factorflow.factors import FactorArrays
from factorflow.models._keras_fit import KerasTraining, fit_epochs, holdout, make_optimizer, rmse
from factorflow.models.base import StepCallback, config_params, is_int, is_number

if TYPE_CHECKING:
    import scipy.sparse as sp

    from factorflow.progress import Progress

__all__ = ["ACTIVATIONS", "KerasDeep", "KerasDeepConfig", "KerasResidual", "KerasResidualConfig", "hidden_widths"]

#: Hidden-layer activations a config may name (Keras's built-in names).
ACTIVATIONS = ("relu", "elu", "gelu", "selu", "tanh", "swish", "sigmoid")
_WIDTHS = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*$")


def hidden_widths(hidden: Any) -> tuple[int, ...]:
    """The layer widths of a ``hidden`` value: ``"128,64"`` (spaces allowed) or a sequence of
    integers; every width an integer ≥ 1, at least one layer (ParameterError naming ``hidden``)."""
    rule = "comma-separated hidden layer widths, integers >= 1 (e.g. '128,64')"
    if isinstance(hidden, str):
        check_param(bool(_WIDTHS.match(hidden)), "hidden", hidden, rule)
        widths = tuple(int(w) for w in hidden.split(","))
    else:
        check_param(isinstance(hidden, (list, tuple)) and len(hidden) > 0 and all(is_int(w) for w in hidden),
                    "hidden", hidden, rule)
        widths = tuple(int(w) for w in hidden)
    check_param(all(w >= 1 for w in widths), "hidden", hidden, rule)
    return widths


@dataclass
class _NetOptions(KerasTraining):
    """The architecture options both kinds take (each kind redeclares them with its defaults)."""

    rank: int = 32
    hidden: str = "64"
    activation: str = "relu"
    dropout: float = 0.0
    reg: float = 0.0
    weight_decay: float = 0.0
    init_scale: float = 0.05

    def check_net(self, kind: str) -> None:
        """Validate and normalize (``hidden`` → ``"128,64"``); ParameterError naming the field."""
        check_param(self.kind == kind, "kind", self.kind, repr(kind))
        check_param(is_int(self.rank) and self.rank >= 1, "rank", self.rank, "an integer >= 1")
        self.hidden = ",".join(str(w) for w in hidden_widths(self.hidden))
        check_param(self.activation in ACTIVATIONS, "activation", self.activation, " or ".join(ACTIVATIONS))
        check_param(is_number(self.dropout) and 0 <= self.dropout < 1, "dropout", self.dropout, "a number in [0, 1)")
        for name in ("reg", "weight_decay"):
            v = getattr(self, name)
            check_param(is_number(v) and v >= 0 and np.isfinite(v), name, v, "a finite number >= 0")
        check_param(is_number(self.init_scale) and self.init_scale > 0 and np.isfinite(self.init_scale),
                    "init_scale", self.init_scale, "a finite number > 0")
        self.check_training()
        self.rank = int(self.rank)
        self.dropout, self.reg, self.weight_decay, self.init_scale = (
            float(self.dropout), float(self.reg), float(self.weight_decay), float(self.init_scale))


def _help(text: str, default: object) -> dict[str, str]:
    return {"help": f"{text} (default {default})"}


@dataclass
class KerasDeepConfig(_NetOptions):
    """keras-deep hyper-parameters (the training options are :class:`KerasTraining`'s).

    Defaults (K=64, hidden 128,64 relu, dropout 0.5, λ=0.3, α=1e-3, init std 0.05, Adam lr 3e-4,
    batch 512, ≤60 epochs, patience 3, 10% of train held out) give held-out RMSE 0.8646 / 0.8673 /
    0.8531 on ml-latest-small, random 80/20 (the ``benchmarks/als_tuning.py`` masks, seeds 0/1/2;
    mean 0.8617 — the bar is 0.866; keras-mf 0.8479), best epochs 7/6/10, 87–89 s per fit on 2
    shared CPU cores (TensorFlow). Tried on seed 0 (K=32, 128,64, λ=0.05, no dropout or α unless
    named): as is 0.8703 (best epoch 7), lr 1e-4 0.8729 (with λ=0.1 0.8728), λ=0.1 0.8701, λ=0.2
    0.8697, dropout 0.3 0.8677, dropout 0.5 0.8676, α=1e-4 0.8698, λ=0.2 α=1e-3 0.8690, λ=0.5
    α=1e-2 0.8693, dropout 0.3 λ=0.3 α=1e-3 0.8653 (batch 256, K=64: 0.8652), K=64 dropout 0.5
    0.8652; with the defaults: patience 5 0.8646 (same epoch), hidden 256,128 0.8645. L2 on the
    embeddings alone barely acts (the first Dense kernel can undo their scale); dropout and the
    kernel decay are what hold the network back, and Adam at lr ≥ 5e-4 overfits within a few epochs.
    """

    kind: Literal["keras-deep"] = "keras-deep"
    rank: int = field(default=64, metadata=_help("embedding size K of users and items", 64))
    hidden: str = field(default="128,64", metadata=_help(
        "hidden Dense layer widths, comma-separated, e.g. 128,64", "128,64"))
    activation: str = field(default="relu", metadata=_help(
        "hidden layer activation: " + ", ".join(ACTIVATIONS), "relu"))
    dropout: float = field(default=0.5, metadata=_help("dropout rate after each hidden layer while training", 0.5))
    reg: float = field(default=0.3, metadata=_help("L2 λ per rating on the embedding rows a batch uses", 0.3))
    weight_decay: float = field(default=1e-3, metadata=_help("L2 α on the Dense kernels, per batch", 0.001))
    init_scale: float = field(default=0.05, metadata=_help("std of the random initial embeddings", 0.05))
    lr: float = field(default=3e-4, metadata=_help("optimizer learning rate", 0.0003))

    def __post_init__(self) -> None:
        self.check_net("keras-deep")


@dataclass
class KerasResidualConfig(_NetOptions):
    """keras-residual hyper-parameters (the training options are :class:`KerasTraining`'s).

    Defaults (K=64, MLP branch hidden 64 elu, no dropout, λ=0.12, α=0.03, init std 0.01, Adam lr
    1e-3, batch 512, ≤60 epochs, patience 3, 10% of train held out) give held-out RMSE 0.8628 /
    0.8620 / 0.8492 on ml-latest-small, random 80/20 (the ``benchmarks/als_tuning.py`` masks, seeds
    0/1/2; mean 0.8580 — the bar is 0.875; keras-mf 0.8479), best epochs 11/8/8, 19–57 s per fit
    on 2 shared CPU cores (TensorFlow). On seed 0 the MLP branch is active: its output has std 0.36
    over the test pairs (the MF branch's 0.24; the MF branch alone scores 0.938).
    Tried on seed 0 (K=32, λ=0.1, lr 3e-4, no α or dropout unless named): as is 0.8698 (best epoch
    3), lr 1e-4 0.8715, λ=0.3 0.8698, λ=0.3 dropout 0.5 α=1e-3 0.8704 (lr 1e-4: 0.8710); K=64 λ=0.12:
    lr 1e-3 0.8732, lr 5e-4 dropout 0.5 α=1e-3 0.8702, lr 5e-4 dropout 0.5 α=1e-2 patience 5 0.8697,
    lr 3e-4 init std 0.05 dropout 0.5 α=1e-2 0.8691, lr 1e-3 dropout 0.5 α=1e-2 hidden 32 0.8672;
    K=64 λ=0.12 lr 1e-3 by α: 0.03 0.8628, 0.05 0.8623 (branch std 0.20), 0.1 0.8522 (seeds 1/2
    0.8546/0.8434, mean 0.8501; 43–49 epochs, 87–223 s), 0.3 0.8518 (250 s). At α ≥ 0.1 the
    decay drives the MLP's kernels to zero — its output is a constant (std 0.000 over the test
    pairs) and the model is keras-mf plus a constant — so the default keeps α where the branch
    still learns. Without the kernel decay the MLP branch overfits within 3 epochs at any lr tried.
    """

    kind: Literal["keras-residual"] = "keras-residual"
    rank: int = field(default=64, metadata=_help("embedding size K of users and items", 64))
    hidden: str = field(default="64", metadata=_help(
        "hidden Dense layer widths of the MLP branch, comma-separated, e.g. 128,64", "64"))
    activation: str = field(default="elu", metadata=_help(
        "hidden layer activation: " + ", ".join(ACTIVATIONS), "elu"))
    dropout: float = field(default=0.0, metadata=_help("dropout rate after each hidden layer while training", 0))
    reg: float = field(default=0.12, metadata=_help(
        "L2 λ per rating on the embedding and bias rows a batch uses", 0.12))
    weight_decay: float = field(default=0.03, metadata=_help("L2 α on the Dense kernels, per batch", 0.03))
    init_scale: float = field(default=0.01, metadata=_help("std of the random initial embeddings", 0.01))
    lr: float = field(default=1e-3, metadata=_help("optimizer learning rate", 0.001))

    def __post_init__(self) -> None:
        self.check_net("keras-residual")


def _triples(train: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """(users int32, items int32, ratings float32, shape) of a users×items sparse matrix."""
    import scipy.sparse as sp

    if not sp.issparse(train):
        raise TypeError("train must be a scipy.sparse users×items matrix")
    m = sp.csr_matrix(train, dtype=np.float32)
    m.sum_duplicates()
    coo = m.tocoo()
    return coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data.astype(np.float32), m.shape


class _EpochScorer:
    """A Scorer (``n_users``, ``n_items``, ``score_pairs``, ``score_users``) of the network as it is
    after an epoch: r̂ = network(user, item) + μ — what the per-epoch callback measures. (Models do
    not import serving; this is :class:`factorflow.serving.network.NetworkScorer`'s arithmetic.)"""

    PAIRS_PER_CALL = 1 << 14

    def __init__(self, network: Any, n_users: int, n_items: int, global_mean: float) -> None:
        self.network = network
        self._n_users, self._n_items = int(n_users), int(n_items)
        self.global_mean = float(global_mean)

    @property
    def n_users(self) -> int:
        return self._n_users

    @property
    def n_items(self) -> int:
        return self._n_items

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r̂ for each (users[k], items[k]) pair: float64, unclipped. The network is called directly
        (inference mode) on blocks of ``PAIRS_PER_CALL`` pairs, the last one padded with pair (0, 0):
        ``Model.predict``'s per-call set-up costs more than the arithmetic at the sizes scored each
        epoch, and one block shape means JAX compiles each operation once, not per size."""
        from keras import ops

        users, items = np.asarray(users, dtype=np.int32), np.asarray(items, dtype=np.int32)
        out = np.empty(len(users), dtype=np.float64)
        block = self.PAIRS_PER_CALL
        for lo in range(0, len(users), block):
            u, i = users[lo:lo + block], items[lo:lo + block]
            n = len(u)
            if n < block:
                u, i = np.pad(u, (0, block - n)), np.pad(i, (0, block - n))
            pred = self.network({"user": u, "item": i}, training=False)
            out[lo:lo + n] = ops.convert_to_numpy(pred).reshape(-1)[:n]
        return out + self.global_mean

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """r̂ of each user against every item: float32, shape (len(users), n_items)."""
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), self._n_items), dtype=np.float32)
        per_call = max(1, self.PAIRS_PER_CALL // max(1, self._n_items))
        all_items = np.arange(self._n_items)
        for lo in range(0, len(users), per_call):
            block = users[lo:lo + per_call]
            s = self.score_pairs(np.repeat(block, self._n_items), np.tile(all_items, len(block)))
            out[lo:lo + len(block)] = s.reshape(len(block), self._n_items)
        return out



class _KerasNet:
    """What keras-deep and keras-residual share: the build, the fit loop and the exports."""

    kind: ClassVar[str]
    step_unit: ClassVar[str] = "epoch"
    residual: ClassVar[bool]
    config_class: ClassVar[type]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.keras_model: Any = None  # the prediction model: (user, item) → r̂ − μ
        self._factors: FactorArrays | None = None

    # --- the network -----------------------------------------------------------------------

    def _build(self, n_users: int, n_items: int) -> tuple[Any, Any]:
        """(training model, prediction model) sharing every layer (module docstring).

        The training model outputs [r̂ − μ, λ(‖w_i‖² + ‖u_j‖² [+ b_i² + c_j²])] per pair and its
        loss is (y − out₀)² + out₁, averaged over the batch by Keras, plus the Dense kernels'
        L2 terms (``kernel_regularizer``) when ``weight_decay`` > 0.
        """
        import keras
        from keras import ops

        cfg = self.config
        user = keras.Input(shape=(), dtype="int32", name="user")
        item = keras.Input(shape=(), dtype="int32", name="item")

        def emb(n: int, dim: int, name: str, seed: int | None) -> Any:
            init = (keras.initializers.RandomNormal(stddev=cfg.init_scale, seed=seed) if seed is not None
                    else "zeros")
            return keras.layers.Embedding(n, dim, embeddings_initializer=init, name=name)

        def dense(width: int, name: str, seed: int, activation: str | None) -> Any:
            decay = keras.regularizers.L2(cfg.weight_decay) if cfg.weight_decay > 0 else None
            return keras.layers.Dense(width, activation=activation, name=name, kernel_regularizer=decay,
                                      kernel_initializer=keras.initializers.GlorotUniform(seed=seed))

        w = emb(n_users, cfg.rank, "user_factors", cfg.seed)(user)
        u = emb(n_items, cfg.rank, "item_factors", cfg.seed + 1)(item)
        x = keras.layers.Concatenate(name="concat")([w, u])
        for layer, width in enumerate(hidden_widths(cfg.hidden), start=1):
            x = dense(width, f"hidden_{layer}", cfg.seed + 10 + layer, cfg.activation)(x)
            if cfg.dropout > 0:
                x = keras.layers.Dropout(cfg.dropout, seed=cfg.seed + 100 + layer, name=f"dropout_{layer}")(x)
        pred = ops.squeeze(dense(1, "output", cfg.seed + 10, None)(x), axis=-1)
        penalty = ops.sum(w * w, axis=-1) + ops.sum(u * u, axis=-1)
        if self.residual:
            b = ops.squeeze(emb(n_users, 1, "user_bias", None)(user), axis=-1)
            c = ops.squeeze(emb(n_items, 1, "item_bias", None)(item), axis=-1)
            pred = ops.sum(w * u, axis=-1) + b + c + pred
            penalty = penalty + b * b + c * c
        name = self.kind.replace("-", "_")
        train_model = keras.Model([user, item], ops.stack([pred, cfg.reg * penalty], axis=-1), name=name + "_train")
        predict_model = keras.Model([user, item], pred, name=name)

        def loss(y_true: Any, y_pred: Any) -> Any:
            y = ops.reshape(ops.cast(y_true, "float32"), (-1,))
            return ops.square(y - y_pred[:, 0]) + y_pred[:, 1]

        train_model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.lr), loss=loss)
        return train_model, predict_model

    def _tables(self) -> tuple[tuple[str, bool], ...]:
        """(layer name, is a user table) of the embedding tables."""
        user_side = (("user_factors", True), ("item_factors", False))
        return user_side + ((("user_bias", True), ("item_bias", False)) if self.residual else ())

    def _zero_unseen(self, model: Any, seen_users: np.ndarray, seen_items: np.ndarray) -> None:
        """Zero the embedding (and bias) rows of users and items the fit never saw."""
        for name, is_user in self._tables():
            layer = model.get_layer(name)
            table = np.array(layer.get_weights()[0])
            table[~(seen_users if is_user else seen_items)] = 0.0
            layer.set_weights([table])

    # --- fit -------------------------------------------------------------------------------

    def fit(self, train: sp.spmatrix, *, progress: Progress | None = None,
            callback: StepCallback | None = None) -> _KerasNet:
        """Train up to ``config.epochs`` epochs on a users×items CSR (module docstring).

        History row per epoch: ``epoch``, ``train_rmse`` (on the fitted part, unclipped),
        ``val_rmse`` (on the held-out slice of train, when ``validation_fraction`` > 0),
        ``seconds`` and what ``callback(epoch, scorer)`` returns, ``scorer`` being a Scorer of
        the network after that epoch (``score_pairs``/``score_users``). Stops after ``patience``
        epochs without a better ``val_rmse`` and keeps the best epoch's weights.
        """
        import keras

        cfg = self.config
        users, items, r, (n_users, n_items) = _triples(train)
        mu = float(r.astype(np.float64).mean()) if len(r) else 0.0
        rng = np.random.default_rng(cfg.seed)
        val, fit_part = holdout(len(r), cfg.validation_fraction, rng)
        fu, fi, fr = users[fit_part], items[fit_part], r[fit_part]
        vu, vi, vr = users[val], items[val], r[val]
        seen_users = np.bincount(fu, minlength=n_users) > 0
        seen_items = np.bincount(fi, minlength=n_items) > 0

        keras.utils.set_random_seed(cfg.seed)
        train_model, predict_model = self._build(n_users, n_items)
        self._zero_unseen(predict_model, seen_users, seen_items)  # no gradient reaches them: they stay 0
        target = (fr - np.float32(mu)).astype(np.float32)
        scorer = _EpochScorer(predict_model, n_users, n_items, mu)

        def train_epoch(epoch: int) -> tuple[_EpochScorer, dict[str, Any]]:
            perm = rng.permutation(len(fr))
            train_model.fit([fu[perm], fi[perm]], target[perm], batch_size=cfg.batch_size, epochs=1,
                            shuffle=False, verbose=0)
            measured = {"train_rmse": rmse(scorer, fu, fi, fr)}
            if len(val):
                measured["val_rmse"] = rmse(scorer, vu, vi, vr)
            return scorer, measured

        def snapshot() -> list[np.ndarray]:
            return [np.array(a, copy=True) for a in predict_model.get_weights()]

        self.history, self.best_epoch, weights = fit_epochs(
            cfg.epochs, cfg.patience, train_epoch, snapshot, unit=self.step_unit, callback=callback,
            progress=progress)
        predict_model.set_weights(weights)
        self._zero_unseen(predict_model, seen_users, seen_items)
        self.keras_model = predict_model
        tables = {name: np.asarray(predict_model.get_layer(name).get_weights()[0], dtype=np.float32)
                  for name, _ in self._tables()}
        zeros_u, zeros_i = np.zeros(n_users, np.float32), np.zeros(n_items, np.float32)
        self._factors = FactorArrays(tables["user_factors"], tables["item_factors"],
                                     tables["user_bias"][:, 0] if self.residual else zeros_u,
                                     tables["item_bias"][:, 0] if self.residual else zeros_i, mu)
        return self

    # --- exports ---------------------------------------------------------------------------

    def network(self) -> Any:
        """The fitted prediction model (NetworkScored): inputs ``user``/``item`` (int32, shape
        (batch,)) → r̂ − μ (shape (batch,)); Keras layers and ``keras.ops`` only."""
        if self.keras_model is None:
            raise RuntimeError(f"{type(self).__name__}.network() called before fit()")
        return self.keras_model

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r̂ of (users[k], items[k]) by the fitted network (float64, unclipped)."""
        f = self.factors()
        return _EpochScorer(self.network(), f.n_users, f.n_items, f.global_mean).score_pairs(users, items)

    def factors(self) -> FactorArrays:
        """The embeddings as tables (user/item factors; the residual's MF biases, zeros for deep;
        μ). They do not predict by themselves: the network does."""
        if self._factors is None:
            raise RuntimeError(f"{type(self).__name__}.factors() called before fit()")
        return self._factors

    def params(self) -> dict[str, Any]:
        return config_params(self.config)

    def fit_info(self) -> dict[str, Any]:
        """What model.json records about the fit: the kept (best) epoch, the epochs run, the hidden
        layer widths and the network's parameter count."""
        return {"best_epoch": self.best_epoch, "epochs_run": len(self.history),
                "hidden": list(hidden_widths(self.config.hidden)),
                "parameters": int(self.keras_model.count_params()) if self.keras_model is not None else None}

    @classmethod
    def _n_parameters(cls, config: Any, n_users: int, n_items: int) -> int:
        """Trainable parameters: the embedding (and bias) tables and the Dense layers."""
        width = config.rank + (1 if cls.residual else 0)
        dense, fan_in = 0, 2 * config.rank
        for w in (*hidden_widths(config.hidden), 1):
            dense += fan_in * w + w
            fan_in = w
        return (n_users + n_items) * width + dense


class KerasDeep(_KerasNet):
    """keras-deep (spec §12): r̂ − μ = MLP([w_i; u_j]) (module docstring)."""

    kind: ClassVar[str] = "keras-deep"
    residual: ClassVar[bool] = False
    config_class: ClassVar[type] = KerasDeepConfig

    def __init__(self, config: KerasDeepConfig | None = None) -> None:
        super().__init__(config)

    @staticmethod
    def min_fit_bytes(config: KerasDeepConfig, n_users: int = 0, n_items: int = 0) -> int:
        """A lower bound on one fitting process's memory: the float32 parameters times four (the
        weights, Adam's two moments, the kept best copy)."""
        return 4 * 4 * KerasDeep._n_parameters(config, n_users, n_items)


class KerasResidual(_KerasNet):
    """keras-residual (spec §13): r̂ − μ = w_iᵀu_j + b_i + c_j + MLP([w_i; u_j]) (module docstring)."""

    kind: ClassVar[str] = "keras-residual"
    residual: ClassVar[bool] = True
    config_class: ClassVar[type] = KerasResidualConfig

    def __init__(self, config: KerasResidualConfig | None = None) -> None:
        super().__init__(config)

    @staticmethod
    def min_fit_bytes(config: KerasResidualConfig, n_users: int = 0, n_items: int = 0) -> int:
        """A lower bound on one fitting process's memory: the float32 parameters times four (the
        weights, Adam's two moments, the kept best copy)."""
        return 4 * 4 * KerasResidual._n_parameters(config, n_users, n_items)
