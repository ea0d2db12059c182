"""The process-wide prediction cache is bounded in bytes, not entries; Classify's upload limit and its CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spermlib.dashboard import classify, resources
from spermlib.dashboard.resources import ByteBudgetCache, held_bytes
from spermlib.errors import SpermlibError
from spermlib.fileio import csv_safe_frame
from spermlib.inference.predict import Prediction

MB = 1024 * 1024


def _batch(n_images: int) -> list[Prediction]:
    """What one classified upload keeps: a prediction with its model input per image."""
    return [Prediction(path=f"{i}.png", model_input=np.zeros((224, 224, 3), np.uint8)) for i in range(n_images)]


def test_held_bytes_counts_the_arrays_inside_predictions():
    assert held_bytes(_batch(10)) >= 10 * 224 * 224 * 3
    shared = np.zeros(MB, np.uint8)
    assert held_bytes([shared, shared]) < 2 * MB  # one object counted once


def test_the_cache_holds_at_most_its_budget_whatever_the_number_of_entries():
    cache = ByteBudgetCache(20 * MB)
    for key in range(200):  # 200 uploads of 150 images: ~22 MB each, as many sessions over a day
        cache.get_or_compute(key, lambda: _batch(150))
    assert cache.used_bytes <= 20 * MB and len(cache) == 0  # each is larger than the whole budget: none kept
    for key in range(200):
        cache.get_or_compute(("small", key), lambda: _batch(5))
    assert cache.used_bytes <= 20 * MB and 0 < len(cache) < 200


def test_the_least_recently_used_entry_goes_first_and_a_hit_is_not_recomputed():
    cache = ByteBudgetCache(3 * MB)
    calls = []

    def compute(key):
        return lambda: calls.append(key) or np.zeros(MB, np.uint8)

    for key in "abc":
        cache.get_or_compute(key, compute(key))
    cache.get_or_compute("a", compute("a"))  # a hit: "b" is now the oldest
    cache.get_or_compute("d", compute("d"))
    assert calls == ["a", "b", "c", "d"]
    cache.get_or_compute("a", compute("a"))
    cache.get_or_compute("b", compute("b"))
    assert calls == ["a", "b", "c", "d", "b"]


def test_the_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(resources.PREDICTION_CACHE_ENV, raising=False)
    assert resources.prediction_cache_budget() == 256 * MB
    monkeypatch.setenv(resources.PREDICTION_CACHE_ENV, "64")
    assert resources.prediction_cache_budget() == 64 * MB
    monkeypatch.setenv(resources.PREDICTION_CACHE_ENV, "lots")
    with pytest.raises(SpermlibError, match="SPERMLIB_PREDICTION_CACHE_MB must be a number"):
        resources.prediction_cache_budget()


def test_the_upload_limit_defaults_to_50_and_is_configurable(monkeypatch):
    monkeypatch.delenv(classify.MAX_UPLOAD_FILES_ENV, raising=False)
    assert classify.max_upload_files() == 50
    assert classify.too_many_uploads(50) is None and "51 files uploaded" in classify.too_many_uploads(51)
    monkeypatch.setenv(classify.MAX_UPLOAD_FILES_ENV, "0")
    with pytest.raises(SpermlibError, match="SPERMLIB_MAX_UPLOAD_FILES must be a whole number"):
        classify.max_upload_files()


def test_csv_cells_that_a_spreadsheet_would_run_become_text():
    frame = pd.DataFrame({"file": ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "ok.png", None],
                          "confidence": [0.5, -0.25, 1.0, 0.0, 0.1, 0.2, 0.3, 0.4]})
    safe = csv_safe_frame(frame)
    assert safe["file"].iloc[:7].tolist() == ["'=cmd|' /C calc'!A0", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx",
                                              "ok.png"]
    assert pd.isna(safe["file"].iloc[7])  # a missing cell stays missing
    assert safe["confidence"].tolist() == frame["confidence"].tolist()  # numbers stay numbers
    assert frame["file"].iloc[0].startswith("=")  # the frame itself is unchanged
    assert classify.results_csv(frame).startswith(b"file,confidence\n'=cmd")
