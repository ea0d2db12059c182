"""spermlib.dashboard.state: the typed preset the comparison page hands to the misclassification explorer."""

from __future__ import annotations

import pytest

from spermlib.dashboard.state import MISTAKES_PRESET_KEY, MistakesPreset


def test_a_saved_preset_is_taken_back_once_and_equal():
    state: dict = {}
    preset = MistakesPreset("hushem", "effnet", ("02_Tapered",), ("04_Amorphous",), errors_only=True)
    preset.save(state)
    assert isinstance(state[MISTAKES_PRESET_KEY], dict)  # plain data in the session, not the class
    assert MistakesPreset.take(state) == preset
    assert MistakesPreset.take(state) is None and MISTAKES_PRESET_KEY not in state


def test_a_cell_preset_shows_errors_only_off_the_diagonal():
    off = MistakesPreset.for_cell("smids", "effnet_cbam", "Normal_Sperm", "Non-Sperm")
    assert off.true == ("Normal_Sperm",) and off.pred == ("Non-Sperm",) and off.errors_only
    on = MistakesPreset.for_cell("smids", "effnet_cbam", "Normal_Sperm", "Normal_Sperm")
    assert not on.errors_only  # a diagonal cell holds only correct predictions


@pytest.mark.parametrize("raw", [
    "smids",
    {"arch": "effnet"},
    {"dataset": "smids", "arch": 3},
    {"dataset": "smids", "arch": "effnet", "true": [1]},
    {"dataset": "smids", "arch": "effnet", "errors_only": "yes"},
])
def test_a_malformed_preset_is_dropped(raw):
    state = {MISTAKES_PRESET_KEY: raw}
    assert MistakesPreset.take(state) is None and not state
