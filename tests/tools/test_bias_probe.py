"""The bias probe's fit: the NLL-optimal per-class bias is recovered, and the cross-fit never scores an image
with a bias fitted on it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax

from tools.bias_probe import cross_fitted, fit_bias


def _sample(n: int, true_bias: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logp = log_softmax(rng.normal(0, 2, (n, len(true_bias))), axis=1)
    p = np.exp(log_softmax(logp + true_bias, axis=1))
    y = np.array([rng.choice(len(true_bias), p=row) for row in p])
    return logp, y


def test_fit_bias_recovers_the_bias_that_generated_the_labels():
    true_bias = np.array([0.0, 1.0, -0.7])
    logp, y = _sample(20000, true_bias)
    assert fit_bias(logp, y) == pytest.approx(true_bias, abs=0.08)


def test_cross_fit_differs_from_the_in_sample_fit_and_keeps_the_unbiased_rows_without_enough_images():
    logp, y = _sample(60, np.array([0.0, 1.5, -1.0]), seed=1)
    in_sample = np.exp(log_softmax(logp + fit_bias(logp, y), axis=1))
    held_out = cross_fitted(logp, y)
    assert held_out.sum(1) == pytest.approx(np.ones(len(y)))
    assert not np.allclose(held_out, in_sample)
    y_one = y.copy()
    y_one[:] = 0
    y_one[0] = 1  # class 1 has one image, class 2 none
    assert cross_fitted(logp, y_one) == pytest.approx(np.exp(logp))
