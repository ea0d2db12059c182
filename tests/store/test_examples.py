"""The Overview's stored worked example: round trip, staleness after a retrain, unreadable files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spermlib.store.cards import checkpoint_path
from spermlib.store.examples import Example, example_path, is_current, read_example, write_example
from spermlib.store.results import ResultsError

EXAMPLE = Example("hushem", "effnet_cbam", "01_Normal/x.BMP", 2, "01_Normal", "01_Normal", 0.9)
DIGEST_1, DIGEST_2 = "1" * 64, "2" * 64  # the sha256 of two trainings' weights


def _card(checkpoints, digest):
    card = {"arch": "effnet_cbam", "backbone": "tf_efficientnet_lite0", "classes": ["a", "b"], "input_size": 224,
            "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "hushem", "fold": 2, "weights_sha256": digest}
    path = checkpoint_path("hushem", "effnet_cbam", 2, checkpoints).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card))


@pytest.fixture
def stored(tmp_path):
    rng = np.random.default_rng(0)
    panels = [(f"panel {i}", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for i in range(3)]
    write_example(EXAMPLE, panels, DIGEST_1, {"device": "cpu"}, tmp_path / "results")
    _card(tmp_path / "checkpoints", DIGEST_1)
    return tmp_path, panels


def test_round_trip_keeps_example_captions_and_pixels(stored):
    base, panels = stored
    got = read_example("hushem", base / "results")
    assert got.example == EXAMPLE and [c for _, c in got.panels] == ["panel 0", "panel 1", "panel 2"]
    for (_, want), image in zip(panels, got.images()):
        np.testing.assert_array_equal(image, want)  # PNG is lossless
    assert read_example("smids", base / "results") is None


def test_a_retrained_checkpoint_makes_the_example_stale(stored):
    base, _ = stored
    got = read_example("hushem", base / "results")
    assert is_current(got, base / "checkpoints")
    _card(base / "checkpoints", DIGEST_2)
    assert not is_current(got, base / "checkpoints")
    assert not is_current(got, base / "no_checkpoints")


def test_unreadable_or_incomplete_example_is_one_clear_error(stored):
    base, _ = stored
    (panel1,) = (base / "results" / "hushem" / "worked_example").glob("panel1-*.png")
    panel1.unlink()
    with pytest.raises(ResultsError, match="missing"):
        read_example("hushem", base / "results")
    example_path("hushem", base / "results").write_text("{not json")
    with pytest.raises(ResultsError, match="spermlib example"):
        read_example("hushem", base / "results")
