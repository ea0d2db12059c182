"""The stored-probability ensembles: a mean of runs is scored image by image, and runs of other images are refused."""

from __future__ import annotations

import pytest

from research.stored_ensembles import PROBS, score


def _run(p_by_fold: dict[str, list[list[float]]], y_by_fold: dict[str, list[int]]) -> dict:
    return {k: {"test_paths": [f"{k}/{i}" for i in range(len(p))], "test_y": y_by_fold[k], "test_p": p}
            for k, p in p_by_fold.items()}


def test_the_mean_of_two_runs_can_be_right_where_each_is_wrong():
    y = {"0": [0, 2], "1": [1]}
    a = _run({"0": [[0.4, 0.5, 0.1], [0.1, 0.2, 0.7]], "1": [[0.6, 0.3, 0.1]]}, y)  # wrong (1), right, wrong
    b = _run({"0": [[0.4, 0.1, 0.5], [0.1, 0.6, 0.3]], "1": [[0.1, 0.3, 0.6]]}, y)  # wrong (2), wrong, wrong
    assert score([a], "test_p", ["0", "1"])[:2] == (1, 3)
    assert score([b], "test_p", ["0", "1"])[:2] == (0, 3)
    # means: (0.4, 0.3, 0.3) right where both were wrong; (0.1, 0.4, 0.5) right; (0.35, 0.3, 0.35) wrong
    assert score([a, b], "test_p", ["0", "1"])[:2] == (2, 3)


def test_runs_that_scored_other_images_are_refused():
    a = _run({"0": [[0.9, 0.1]]}, {"0": [0]})
    b = {"0": {**a["0"], "test_paths": ["0/other"]}}
    with pytest.raises(ValueError, match="different images"):
        score([a, b], "test_p", ["0"])


def test_the_stored_sweep_arrays_are_there():
    assert len(list(PROBS.glob("*.json"))) >= 6
