"""Per-class decision bias: the one calibration step that may move a fold model's predicted class.

Temperature scaling (``calibration.temperature``) rescales every class alike, so it never changes a single model's
argmax. An additive per-class bias on the log-probabilities can: it is the bias half of vector scaling (Guo
et al., ICML 2017), i.e. where the decision boundaries between the classes sit. Per fold model and per
inference mode (one view, or the mean over the 8 TTA views), ``b`` (class 0's entry fixed at 0) minimises the
NLL of the fold's inner-validation images at the card's temperature (L-BFGS).

Rule, fixed before any out-of-fold score was seen (``research.bias_probe``, commit 89d8d67): fold k's card takes
``b`` for a mode only if, cross-fitted on its inner validation (a stratified 5-fold split of those images, seed
0: ``b`` fitted on four parts, scored on the fifth), it gets strictly more inner-validation images right than no
bias; a tie keeps none. Test folds play no part.

Stored on the card as ``decision_bias`` = ``{mode: T · b}`` (``mode`` in :data:`MODES`), the raw-logit scale,
so that the core's probabilities are ``softmax(log p + T·b)`` (the argmax of ``log p / T + b``, what was
fitted) and ``predict.tempered`` then gives ``softmax(log p / T + b)``. Torch-free; applying a bias needs
only numpy (the inference core imports this module), fitting one imports scipy and scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from spermlib.store.card_schema import DECISION_BIAS_MODES

MODES = DECISION_BIAS_MODES  # the card's keys: one view, and the mean over the 8 TTA views
ONE_VIEW, TTA = MODES
CROSS_FIT_SPLITS = 5
CROSS_FIT_SEED = 0
RULE = ("per fold model and inference mode (one view, 8-view TTA): a per-class additive bias on the tempered "
        "log-probabilities (class 0 fixed at 0) fitted by NLL on the fold's inner validation; kept only if, "
        f"cross-fitted on that inner validation (stratified {CROSS_FIT_SPLITS}-fold, seed {CROSS_FIT_SEED}), it "
        "gets strictly more images right than no bias (a tie keeps none); test folds play no part")


def log_probabilities(probabilities: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, np.float64), 1e-300, None)) / temperature


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax (numpy; the core imports this module, scipy is not needed to apply a bias)."""
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def apply_bias(probabilities: np.ndarray, bias: Sequence[float] | np.ndarray) -> np.ndarray:
    """``softmax(log p + bias)`` row by row (``bias`` on the raw-logit scale, as cards store it)."""
    return softmax(log_probabilities(probabilities) + np.asarray(bias, np.float64)).astype(np.float32)


def fit_bias(logp: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The per-class bias ``b`` (``b[0] = 0``) minimising the mean NLL of ``y`` under ``softmax(logp + b)``."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    rows = np.arange(len(y))

    def loss(free: np.ndarray) -> tuple[float, np.ndarray]:
        z = logp + np.concatenate([[0.0], free])
        grad = softmax(z)
        grad[rows, y] -= 1
        return float(-log_softmax(z, axis=1)[rows, y].mean()), grad.mean(0)[1:]

    res = minimize(loss, np.zeros(logp.shape[1] - 1), jac=True, method="L-BFGS-B")
    return np.concatenate([[0.0], res.x])


def cross_fitted(logp: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each image's biased probabilities with ``b`` fitted on the other parts only; where a class has fewer than
    two images there is no honest cross-fit, and the unbiased ones come back (so the bias cannot win)."""
    from sklearn.model_selection import StratifiedKFold

    n_splits = min(CROSS_FIT_SPLITS, int(np.bincount(y, minlength=logp.shape[1]).min()))
    if n_splits < 2:
        return softmax(logp)
    out = np.zeros_like(logp)
    for fit, held in StratifiedKFold(n_splits, shuffle=True, random_state=CROSS_FIT_SEED).split(logp, y):
        out[held] = softmax(logp[held] + fit_bias(logp[fit], y[fit]))
    return out


def decide(probabilities: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> dict:
    """The rule on one fold model's inner-validation probabilities (one mode): the fitted bias on the raw-logit
    scale, both inner-validation counts, and whether the card takes it."""
    y = np.asarray(y)
    logp = log_probabilities(probabilities, temperature)
    b = fit_bias(logp, y)
    as_is = int((logp.argmax(1) == y).sum())
    held_out = int((cross_fitted(logp, y).argmax(1) == y).sum())
    return {"bias": [float(v) for v in temperature * b], "temperature": float(temperature), "n_inner_val": len(y),
            "inner_val_right_without": as_is, "inner_val_right_cross_fitted": held_out, "taken": held_out > as_is}


def card_bias(decisions: Mapping[str, dict]) -> dict[str, list[float]] | None:
    """The card's ``decision_bias``: the modes whose bias was taken (``None``: no field)."""
    taken = {m: d["bias"] for m, d in decisions.items() if d["taken"]}
    return taken or None
