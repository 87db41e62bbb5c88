"""AutoRec (Sedhain et al., WWW 2015; spec §§14–15): one-hidden-layer autoencoders of rating vectors.

**I-AutoRec** (kind ``i-autorec``) takes each ITEM as a sample: its vector x_j ∈ ℝ^{n_users} of
the users' training ratings. **U-AutoRec** (``u-autorec``) takes each USER's vector of item ratings.
Below, a "row" is a sample (an item for I-AutoRec) and a "column" is a coordinate of its vector
(a user for I-AutoRec); U-AutoRec swaps the roles.

Centring (``center``): with ``bias`` (the default) μ, b and c are the bias baseline
(:class:`~factorflow.models.baselines.BiasBaseline`, λ = ``bias_reg`` on both sides) fitted on
the fit part of train, and the network sees residuals x_ij = r_ij − μ − b_i − c_j; with ``mean``
b = c = 0 and μ is the fit part's mean. An unobserved entry of x is 0 (the fallback's own
value). The network of a row vector x is

    h = g(V x + b_h)            (encoder: Dense of width ``hidden``, activation g = ``activation``)
    x̂ = W h + b_out             (decoder: Dense, linear output)

and the fit minimizes, over the observed entries Ω only (denoising: Dropout of rate
``input_dropout`` on x during training),

    J = Σ_{(row, col) ∈ Ω} (x − x̂)² + λ/2 (‖V‖² + ‖W‖²)        (λ = ``reg``; b_h, b_out free)

from V Glorot-uniform and W = 0, b_out = 0 (so training starts from the centring itself: with
``center=bias``, from the bias baseline), as minibatches of ``batch_size`` rows (each row with
an observed entry once per epoch; an empty row has no loss), each batch's loss being its masked
sum over (|B| · |Ω|/n_rows), n_rows the number of non-empty rows, plus λ/(2|Ω|)(‖V‖² + ‖W‖²):
an unbiased estimate of J/|Ω|. The target of an unobserved entry never enters: :func:`masked_sse`
selects observed entries before squaring.

Prediction is the reconstruction of the TRAINING row: r̂_ij = μ + b_i + c_j + x̂(row)[col].

**Serving as factor tables.** With a linear output, for I-AutoRec (row j = item, col i = user)

    x̂_j[i] = W_i · h_j + b_out,i   (W_i: row i of W, i.e. column i of the Keras decoder kernel)

so with the item factor u_j = [h_j, 1], the user factor w_i = [W_i, b_out,i], item bias c_j,
user bias b_i and μ, :class:`~factorflow.factors.FactorArrays` gives exactly
r̂_ij = w_iᵀu_j + b_i + c_j + μ (rank = ``hidden`` + 1). U-AutoRec: u_j = [W_j, b_out,j],
w_i = [h_i, 1]. The published codes h are those of each row's whole training vector (fit and
validation parts), under the kept epoch's weights.

**Validation and cold rows.** ``validation_fraction`` of the train ratings (:func:`holdout`, a
seeded shuffle of the nonzeros; never the test split) is held out: the fit part is the training
input, and ``val_rmse`` predicts each held-out entry from the reconstruction of its row's
fit-part vector; the best epoch's weights are kept (``patience``). A row with no training rating
(an empty input vector) is cold: its code is all zero (the trailing 1 included), and a column
with no rating in the fit part never trained its weights, so its encoder row, decoder column and
decoder bias are set to zero (in the Keras model too). Either way r̂ falls back to exactly
μ + b_i + c_j, in :meth:`predict` and in the tables alike.

**Fold-in** (I-AutoRec only): a new user is a new decoder row; see :meth:`IAutoRec.fold_in`.
U-AutoRec would encode the new user's vector, but the encoder (V, b_h) is not part of the
published tables, so it does not fold in (the CLI refuses it in one line).

Keras 3 code using only ``keras`` and ``keras.ops`` (TensorFlow by default; also JAX). Batches are
densified one at a time by :class:`~factorflow.models._row_batches.RowBatches`, so memory is
O(batch · n_cols + n_cols · hidden), never n_users × n_items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from factorflow.errors import ParameterError, check_param
from factorflow.factors import FactorArrays
from factorflow.models._keras_fit import KerasTraining, fit_epochs, holdout, make_optimizer, rmse
from factorflow.models.base import StepCallback, check_fold_in, config_params, is_int, is_number

if TYPE_CHECKING:
    import scipy.sparse as sp

    from factorflow.models._row_batches import RowCSR
    from factorflow.progress import Progress

__all__ = ["ACTIVATIONS", "CENTERS", "IAutoRec", "IAutoRecConfig", "UAutoRec", "UAutoRecConfig", "masked_sse"]

ACTIVATIONS = ("sigmoid", "tanh", "relu", "elu", "selu", "linear")
CENTERS = ("bias", "mean")


@dataclass
class _AutoRecConfig(KerasTraining):
    """What both AutoRec kinds take (the training options are :class:`KerasTraining`'s)."""

    epochs: int = field(default=100, metadata={"help": "maximum training epochs (default 100)"})
    batch_size: int = field(default=128, metadata={"help": "minibatch size in ROWS (rating vectors; default 128)"})
    lr: float = field(default=3e-4, metadata={"help": "optimizer learning rate (default 0.0003)"})
    patience: int = field(default=10, metadata={
        "help": "early stopping: epochs without a better validation RMSE before stopping (default 10)"})
    hidden: int = field(default=500, metadata={"help": "AutoRec: hidden layer width (default 500)"})
    activation: str = field(default="elu", metadata={
        "help": f"AutoRec: hidden activation, one of {', '.join(ACTIVATIONS)} (default elu; the paper's: sigmoid)"})
    reg: float = field(default=300.0, metadata={"help": "AutoRec: L2 λ, penalty λ/2 (‖V‖² + ‖W‖²) (default 300)"})
    input_dropout: float = field(default=0.0, metadata={
        "help": "AutoRec: dropout rate on the input vector, denoising (default 0)"})
    center: str = field(default="bias", metadata={
        "help": "AutoRec: residuals of the bias baseline ('bias') or of the mean ('mean') (default bias)"})
    bias_reg: float = field(default=3.0, metadata={
        "help": "AutoRec: λ of the bias baseline the residuals are taken from (center=bias; default 3)"})

    _KIND: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_param(self.kind == self._KIND, "kind", self.kind, repr(self._KIND))  # type: ignore[attr-defined]
        check_param(is_int(self.hidden) and self.hidden >= 1, "hidden", self.hidden, "an integer >= 1")
        check_param(self.activation in ACTIVATIONS, "activation", self.activation, " or ".join(ACTIVATIONS))
        check_param(is_number(self.reg) and self.reg >= 0 and np.isfinite(self.reg), "reg", self.reg,
                    "a finite number >= 0")
        check_param(is_number(self.input_dropout) and 0 <= self.input_dropout < 1, "input_dropout",
                    self.input_dropout, "a number in [0, 1)")
        check_param(self.center in CENTERS, "center", self.center, " or ".join(CENTERS))
        check_param(is_number(self.bias_reg) and self.bias_reg >= 0 and np.isfinite(self.bias_reg), "bias_reg",
                    self.bias_reg, "a finite number >= 0")
        self.check_training()
        self.hidden, self.reg, self.input_dropout, self.bias_reg = (int(self.hidden), float(self.reg),
                                                                    float(self.input_dropout), float(self.bias_reg))


@dataclass
class IAutoRecConfig(_AutoRecConfig):
    """I-AutoRec hyper-parameters (each item's vector of user ratings is a sample).

    Defaults (hidden 500, ELU, λ=300, no input dropout, center=bias with λ_b=3, Adam lr 3e-4,
    batches of 128 items, ≤100 epochs, patience 10, 10% of train held out) give held-out RMSE
    0.8492 / 0.8504 / 0.8364 on ml-latest-small, random 80/20 (the ``benchmarks/als_tuning.py``
    masks, seeds 0/1/2, ``benchmarks/autorec_tuning.py``; mean 0.8453 — the bar is 0.885; ALS
    0.8476, keras-mf 0.8479, bias baseline 0.8617), best epochs 8/6/6, 86–107 s per fit on 2
    shared CPU cores (TensorFlow; JAX gives 0.8493 on seed 0).
    Tried on seed 0 (JAX): the paper's sigmoid converges slowly and stays worse — λ=1 0.8773
    (Glorot-initialized decoder, lr 1e-3, batch 32), λ=10 0.8626, λ=100 0.8600, then with the
    decoder starting at zero λ=100 0.8550, lr 1e-4 0.8706, batch 128 with lr 3e-4 0.8527 (73
    epochs, 230 s), λ=30 0.8508, λ=300 0.8716 (stopped at epoch 15), lr 1e-3 0.8647. ELU, batch
    128, lr 3e-4: λ=100 0.8503 (best epoch 4; with lr 1e-4 0.8503), λ=1000 0.8591; at λ=300
    (the default, 0.8493): lr 1e-3 0.8504, batch 32 0.8496, input dropout 0.2 0.8485 (seeds 1/2:
    0.8501/0.8366, mean 0.8451 — no better), hidden 200 0.8492, hidden 1000 0.8494, Glorot
    decoder 0.8498, center=mean 0.8905 (sigmoid, λ=1: 0.9396). relu 0.8501, tanh 0.8505 (λ=100).
    """

    kind: Literal["i-autorec"] = "i-autorec"
    _KIND: ClassVar[str] = "i-autorec"


@dataclass
class UAutoRecConfig(_AutoRecConfig):
    """U-AutoRec hyper-parameters (each user's vector of item ratings is a sample).

    The same defaults as I-AutoRec (batches of 128 users) give held-out RMSE 0.8528 / 0.8565 /
    0.8416 on ml-latest-small, random 80/20 (als_tuning masks, seeds 0/1/2; mean 0.8503; no bar),
    best epochs 21/22/19, 201–246 s per fit (TensorFlow, 2 shared CPU cores). Tried on seed 0
    (JAX): batch 32 0.8530, batch 8 0.8539, batch 32 with λ=100 0.8533, with λ=1000 0.8624.
    """

    kind: Literal["u-autorec"] = "u-autorec"
    _KIND: ClassVar[str] = "u-autorec"


def masked_sse(y_true: Any, y_pred: Any) -> Any:
    """Σ_c m_c (t_c − x̂_c)² per row, where ``y_true[..., 0]`` = t (targets) and ``y_true[..., 1]``
    = m (1 where observed). Unobserved targets are selected away before any arithmetic, so
    their values (even inf or NaN) change neither the loss nor its gradient."""
    from keras import ops

    t, m = y_true[..., 0], y_true[..., 1]
    d = ops.where(m > 0, y_pred - ops.where(m > 0, t, ops.zeros_like(t)), ops.zeros_like(y_pred))
    return ops.sum(d * d, axis=-1)



class _AutoRec:
    """Shared by :class:`IAutoRec` and :class:`UAutoRec` (module docstring); ``orientation`` says
    which side is the sample ("item": rows are items, columns users)."""

    kind: ClassVar[str]
    orientation: ClassVar[str]
    config_class: ClassVar[type]
    step_unit: ClassVar[str] = "epoch"

    def __init__(self, config: _AutoRecConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.keras_model: Any = None  # the autoencoder: a row's (centred) vector → its reconstruction
        self._factors: FactorArrays | None = None
        self._inputs: RowCSR | None = None  # every row's whole training vector (what is encoded)

    # --- orientation --------------------------------------------------------------------------

    def _rows_cols(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (items, users) if self.orientation == "item" else (users, items)

    def _tables(self, weights: dict[str, np.ndarray], codes: np.ndarray, b: np.ndarray, c: np.ndarray,
                mu: float) -> FactorArrays:
        """FactorArrays of decoder weights and row codes: column factors [W_col, b_out,col]."""
        col = np.hstack([weights["dec_kernel"].T, weights["dec_bias"][:, None]]).astype(np.float32)
        w, u = (col, codes) if self.orientation == "item" else (codes, col)
        return FactorArrays(np.ascontiguousarray(w), np.ascontiguousarray(u), b.astype(np.float32),
                            c.astype(np.float32), float(mu))

    # --- the network --------------------------------------------------------------------------

    def _build(self, n_cols: int, n_obs: int, n_rows: int) -> Any:
        """The autoencoder (encoder kernel Glorot-uniform, decoder kernel zero), compiled with the
        masked loss over (|B| · n_obs/n_rows) and the L2 penalty λ/(2 n_obs) on both kernels
        (module docstring)."""
        import keras

        cfg = self.config
        x_in = keras.Input(shape=(n_cols,), name="ratings")
        x = keras.layers.Dropout(cfg.input_dropout, seed=cfg.seed + 2, name="input_dropout")(x_in) \
            if cfg.input_dropout > 0 else x_in
        l2 = cfg.reg / (2.0 * max(n_obs, 1))
        h = keras.layers.Dense(cfg.hidden, activation=cfg.activation, name="encoder",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=cfg.seed),
                               kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None)(x)
        out = keras.layers.Dense(n_cols, name="decoder",
                                 kernel_initializer="zeros",
                                 kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None)(h)
        model = keras.Model(x_in, out, name=self.kind.replace("-", "_"))
        per_row = max(n_obs, 1) / max(n_rows, 1)

        def loss(y_true: Any, y_pred: Any) -> Any:
            return masked_sse(y_true, y_pred) / per_row

        model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.lr), loss=loss)
        return model

    @staticmethod
    def _weights(model: Any, seen_cols: np.ndarray) -> dict[str, np.ndarray]:
        """The network's weights, those of columns the fit never saw set to zero."""
        enc_k, enc_b = (np.array(a, np.float32) for a in model.get_layer("encoder").get_weights())
        dec_k, dec_b = (np.array(a, np.float32) for a in model.get_layer("decoder").get_weights())
        enc_k[~seen_cols] = 0.0
        dec_k[:, ~seen_cols] = 0.0
        dec_b[~seen_cols] = 0.0
        return {"enc_kernel": enc_k, "enc_bias": enc_b, "dec_kernel": dec_k, "dec_bias": dec_b}

    def _codes(self, x: RowCSR, weights: dict[str, np.ndarray], chunk: int = 8192) -> np.ndarray:
        """[g(V x + b_h), 1] of every row with a stored entry, zeros for empty rows: (n_rows, hidden+1) float32."""
        import keras
        from keras import ops

        act = keras.activations.get(self.config.activation)
        m = x.scipy()
        hidden = weights["enc_bias"].shape[0]
        out = np.zeros((x.n_rows, hidden + 1), np.float32)
        for lo in range(0, x.n_rows, chunk):
            z = np.asarray(m[lo:lo + chunk] @ weights["enc_kernel"], np.float32) + weights["enc_bias"]
            out[lo:lo + chunk, :hidden] = ops.convert_to_numpy(act(ops.convert_to_tensor(z)))
        out[:, hidden] = 1.0
        out[x.counts == 0] = 0.0
        return out

    # --- fit ----------------------------------------------------------------------------------

    def fit(self, train: sp.spmatrix, *, progress: Progress | None = None,
            callback: StepCallback | None = None) -> _AutoRec:
        """Train up to ``config.epochs`` epochs on a users×items CSR (module docstring).

        History row per epoch: ``epoch``, ``train_rmse`` (the fit part, reconstructed from the
        fit-part vectors), ``val_rmse`` (the held-out slice of train, from the same
        reconstruction; when ``validation_fraction`` > 0), ``seconds`` and what
        ``callback(epoch, factors)`` returns, ``factors`` being the tables of that epoch's weights
        (codes of the whole training vectors). Keeps the epoch with the best ``val_rmse``.
        """
        import scipy.sparse as sp

        from factorflow.models._row_batches import RowBatches, row_csr
        from factorflow.models.baselines import BiasBaseline, BiasConfig

        if not sp.issparse(train):
            raise TypeError("train must be a scipy.sparse users×items matrix")
        cfg = self.config
        m = sp.csr_matrix(train, dtype=np.float64)
        m.sum_duplicates()
        coo = m.tocoo()
        users, items, r = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
        n_users, n_items = m.shape
        if len(r) == 0:
            raise ParameterError(f"{self.kind}: the train matrix has no ratings")
        rng = np.random.default_rng(cfg.seed)
        val, fit_part = holdout(len(r), cfg.validation_fraction, rng)
        if cfg.center == "bias":
            fit_csr = sp.csr_matrix((r[fit_part], (users[fit_part], items[fit_part])), shape=m.shape)
            base = BiasBaseline(BiasConfig(reg_user=cfg.bias_reg, reg_item=cfg.bias_reg)).fit(fit_csr).factors()
            mu, b, c = float(base.global_mean), base.user_bias.astype(np.float64), base.item_bias.astype(np.float64)
        else:
            mu, b, c = float(r[fit_part].mean()), np.zeros(n_users), np.zeros(n_items)
        resid = r - mu - b[users] - c[items]
        rows, cols = self._rows_cols(users, items)
        shape = (n_items, n_users) if self.orientation == "item" else (n_users, n_items)
        x_fit = row_csr(rows[fit_part], cols[fit_part], resid[fit_part], shape)
        x_all = row_csr(rows, cols, resid, shape)
        seen_cols = np.bincount(cols[fit_part], minlength=shape[1]) > 0

        model = self._build(shape[1], len(fit_part), int((x_fit.counts > 0).sum()))
        batches = RowBatches(x_fit, cfg.batch_size, rng, rows=np.flatnonzero(x_fit.counts > 0))
        fu, fi, fr = users[fit_part], items[fit_part], r[fit_part]
        vu, vi, vr = users[val], items[val], r[val]
        current: dict[str, Any] = {}

        def train_epoch(epoch: int) -> tuple[FactorArrays, dict[str, Any]]:
            batches.shuffle()
            model.fit(batches, epochs=1, shuffle=False, verbose=0)  # the order is batches.shuffle()'s
            weights = self._weights(model, seen_cols)
            on_fit = self._tables(weights, self._codes(x_fit, weights), b, c, mu)
            measured = {"train_rmse": rmse(on_fit, fu, fi, fr)}
            if len(val):
                measured["val_rmse"] = rmse(on_fit, vu, vi, vr)
            current["state"] = (weights, self._tables(weights, self._codes(x_all, weights), b, c, mu))
            return current["state"][1], measured

        self.history, self.best_epoch, (weights, factors) = fit_epochs(
            cfg.epochs, cfg.patience, train_epoch, lambda: current["state"], unit=self.step_unit,
            callback=callback, progress=progress)
        model.get_layer("encoder").set_weights([weights["enc_kernel"], weights["enc_bias"]])
        model.get_layer("decoder").set_weights([weights["dec_kernel"], weights["dec_bias"]])
        self.keras_model, self._factors, self._inputs = model, factors, x_all
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r̂ of (users[k], items[k]) by the fitted Keras autoencoder itself (float64): the
        reconstruction of the row's whole training vector, μ + b + c for a cold row — what the
        exported tables must reproduce."""
        from factorflow.models._row_batches import dense_rows

        if self.keras_model is None or self._inputs is None:
            raise RuntimeError(f"{type(self).__name__}.predict() called before fit()")
        f = self.factors()
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        out = f.global_mean + f.user_bias[users].astype(np.float64) + f.item_bias[items].astype(np.float64)
        rows, cols = self._rows_cols(users, items)
        warm = np.flatnonzero(self._inputs.counts[rows] > 0)
        uniq, inv = np.unique(rows[warm], return_inverse=True)
        order = np.argsort(inv, kind="stable")
        step = self.config.batch_size
        for lo in range(0, len(uniq), step):
            x, _ = dense_rows(self._inputs, uniq[lo:lo + step])
            rec = np.asarray(self.keras_model.predict_on_batch(x), np.float64)
            at = order[np.searchsorted(inv[order], lo):np.searchsorted(inv[order], lo + step)]
            out[warm[at]] += rec[inv[at] - lo, cols[warm[at]]]
        return out

    def factors(self) -> FactorArrays:
        if self._factors is None:
            raise RuntimeError(f"{type(self).__name__}.factors() called before fit()")
        return self._factors

    def params(self) -> dict[str, Any]:
        return config_params(self.config)

    def fit_info(self) -> dict[str, Any]:
        """What model.json records about the fit: the kept epoch, the epochs run, the network's
        shape and how the tables serve it."""
        cfg = self.config
        if self.orientation == "item":
            serving = ("I-AutoRec, linear decoder: r̂_ij = μ + b_i + c_j + W_i·h_j + b_out,i with "
                       f"h_j = {cfg.activation}(V x_j + b_h) the code of item j's training vector; item factors "
                       "[h_j, 1], user factors [W_i, b_out,i]; cold rows: zero factors (μ + bias fallback)")
        else:
            serving = ("U-AutoRec, linear decoder: r̂_ij = μ + b_i + c_j + W_j·h_i + b_out,j with "
                       f"h_i = {cfg.activation}(V x_i + b_h) the code of user i's training vector; user factors "
                       "[h_i, 1], item factors [W_j, b_out,j]; cold rows: zero factors (μ + bias fallback)")
        return {"best_epoch": self.best_epoch, "epochs_run": len(self.history), "sample": self.orientation,
                "hidden": cfg.hidden, "activation": cfg.activation, "rank": cfg.hidden + 1, "center": cfg.center,
                "serving": serving}

    @staticmethod
    def min_fit_bytes(config: _AutoRecConfig, n_users: int = 0, n_items: int = 0) -> int:
        """A lower bound on one fitting process's memory (float32): both kernels and biases times
        four (weights, Adam's two moments, the kept best copy), five dense (batch × n_cols) arrays
        (input, target and mask, output, its gradient) and the codes of every row (twice)."""
        rows, cols = (n_items, n_users) if config.kind == "i-autorec" else (n_users, n_items)
        weights = 2 * cols * config.hidden + cols + config.hidden
        return 4 * (4 * weights + 5 * config.batch_size * cols + 2 * rows * (config.hidden + 1))


class IAutoRec(_AutoRec):
    """I-AutoRec: each item's vector of user ratings is a sample (module docstring)."""

    kind: ClassVar[str] = "i-autorec"
    orientation: ClassVar[str] = "item"
    config_class: ClassVar[type] = IAutoRecConfig

    def fold_in(self, factors: FactorArrays, item_idx: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """A new user's (w, b) given the published item codes: the user is a new decoder row.

        Mirrors the fit, in its two stages, with the items fixed (the new user has no encoder
        column: the item codes are unchanged, as for a column the fit never saw).
        With ``center=bias`` the bias is the bias baseline's exact fold-in,
        b = Σ_j (r_j − μ − c_j) / (n + λ_b) (λ_b = ``bias_reg``; b = 0 with ``center=mean``).
        Then w = [W_i, b_out,i] minimizes the user's part of J,
        Σ_j (r_j − μ − b − c_j − u_jᵀw)² + λ/2 ‖W_i‖² (b_out,i unpenalized), u_j = [h_j, 1]:
        (Σ_j u_j u_jᵀ + diag(λ/2, …, λ/2, 0)) w = Σ_j (r_j − μ − b − c_j) u_j, solved in float64
        (least squares, i.e. the minimum-norm minimizer, when singular).
        """
        items, r = check_fold_in(factors, item_idx, ratings)
        if len(items) == 0:
            return np.zeros(factors.rank, dtype=np.float32), 0.0
        resid = r - float(factors.global_mean) - factors.item_bias[items].astype(np.float64)
        b = float(resid.sum() / max(len(items) + self.config.bias_reg, 1e-12)) if self.config.center == "bias" \
            else 0.0
        u = factors.item_factors[items].astype(np.float64)
        penalty = np.full(factors.rank, self.config.reg / 2.0)
        penalty[-1] = 0.0
        w = np.linalg.lstsq(u.T @ u + np.diag(penalty), u.T @ (resid - b), rcond=None)[0]
        return w.astype(np.float32), b


class UAutoRec(_AutoRec):
    """U-AutoRec: each user's vector of item ratings is a sample (module docstring). No fold-in:
    a new user's code needs the encoder, which the published tables do not hold."""

    kind: ClassVar[str] = "u-autorec"
    orientation: ClassVar[str] = "user"
    config_class: ClassVar[type] = UAutoRecConfig
