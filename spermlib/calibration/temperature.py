"""Temperature scaling of one fold model's logits (Guo et al., ICML 2017), and the softmax helpers it rests on.

The temperature ``T`` is fitted per fold model on its inner-validation logits (``calibration.fit``, run by
``spermlib ood``) and stored on its card (``temperature``); prediction divides the logits by
it (``inference.predict``). Torch-free; fitting imports scipy.
"""

from __future__ import annotations

import numpy as np

from spermlib.store.card_schema import TEMPERATURE_RANGE  # the range a card may carry is the range fitted


def logsumexp(x: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp, stable (numpy: scipy.special would add 0.2 s to every predict's imports)."""
    x = np.asarray(x, dtype=np.float64)
    m = x.max(1)
    return m + np.log(np.exp(x - m[:, None]).sum(1))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - logsumexp(x)[:, None]


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / T)."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())



def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of held-out logits (Guo et al., ICML 2017): L-BFGS on log T in ``TEMPERATURE_RANGE``."""
    from scipy.optimize import minimize

    res = minimize(lambda t: nll(logits, labels, float(np.exp(t[0]))), x0=[0.0], method="L-BFGS-B",
                   bounds=[tuple(np.log(TEMPERATURE_RANGE))])
    return float(np.exp(res.x[0]))


def identified_temperature(logits: np.ndarray, labels: np.ndarray, fitted: float | None = None,
                           rel: float = 0.02) -> float | None:
    """:func:`fit_temperature` (or ``fitted``, its result if already at hand), or ``None`` where the held-out
    logits do not identify a temperature.

    With no mistake among them every sample's NLL falls monotonically as T → 0, so there is no optimum: the fit
    only reflects where the search (or the optimiser's tolerance) stopped. The same holds for a fit at a bound.
    """
    if (np.asarray(logits).argmax(1) == np.asarray(labels)).all():
        return None
    t = fit_temperature(logits, labels) if fitted is None else fitted
    lo, hi = TEMPERATURE_RANGE
    return t if lo * (1 + rel) < t < hi / (1 + rel) else None


def softmax_t(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature)).astype(np.float32)
