"""The nested probes' shared rule: fold k's choice is made on its inner validation alone (most right, then
lower NLL, then the tie-break), and the out-of-fold table scores every candidate and that choice."""

from __future__ import annotations

import numpy as np
import pytest

from research.nested_choice import NestedTally, nll


def _probs(right: list[bool], confidence: float) -> np.ndarray:
    """Two classes, true class 0: right rows put ``confidence`` on class 0, wrong rows on class 1."""
    p = np.array([[confidence, 1 - confidence] if r else [1 - confidence, confidence] for r in right])
    return p.astype(np.float32)


def test_choice_by_right_answers_then_nll_then_tie_break_and_test_folds_only_report():
    tally = NestedTally(["a", "b", "c"], tie_break=lambda c: c == "c")
    y_val = np.zeros(4, int)
    y_test = np.zeros(2, int)
    # fold 0: "b" has more right answers on inner validation although "a" is better on the test fold
    val = {"a": _probs([1, 1, 0, 0], 0.9), "b": _probs([1, 1, 1, 0], 0.6), "c": _probs([1, 1, 0, 0], 0.9)}
    test = {"a": _probs([1, 1], 0.9), "b": _probs([0, 0], 0.9), "c": _probs([1, 0], 0.9)}
    assert tally.add_fold(0, val, y_val, test, y_test) == "b"
    # fold 1: a tie on right answers goes to the lower NLL, a full tie to the tie-break
    val = {"a": _probs([1, 1, 1, 1], 0.6), "b": _probs([1, 1, 1, 1], 0.9), "c": _probs([1, 1, 1, 1], 0.9)}
    assert tally.add_fold(1, val, y_val, test, y_test) == "c"
    out = tally.report()
    assert out["choices"] == {0: "b", 1: "c"}
    assert out["oof"]["a"][0] == pytest.approx(1.0) and out["oof"]["b"][0] == pytest.approx(0.0)
    assert out["oof"]["nested"][0] == pytest.approx(0.25)  # fold 0 by "b" (0 of 2), fold 1 by "c" (1 of 2)


def test_without_nll_a_tie_on_right_answers_goes_to_the_tie_break():
    tally = NestedTally(["a", "b"], tie_break=lambda c: c == "a", by_nll=False)
    y = np.zeros(4, int)
    val = {"a": _probs([1, 1, 1, 0], 0.6), "b": _probs([1, 1, 1, 0], 0.99)}  # "b" has the lower NLL
    assert tally.add_fold(0, val, y, val, y) == "a"
    val["b"] = _probs([1, 1, 1, 1], 0.6)
    assert tally.add_fold(1, val, y, val, y) == "b"


def test_nll():
    p = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert nll(p, np.array([0, 1])) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)
