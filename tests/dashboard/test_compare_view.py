"""spermlib.dashboard.compare: confusion-matrix cells, the cell picker and the click → explorer logic."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spermlib.dashboard.compare import cell_key, cell_options, cell_to_open, clicked_cell, heatmap_grid, parse_cell_key
from spermlib.dashboard.tables import confusion_cells
from spermlib.data.datasets import get_dataset

HUSHEM = get_dataset("hushem")
# rows: true class, columns: predicted (01_Normal, 02_Tapered, 03_Pyriform, 04_Amorphous)
MATRIX = [[5, 1, 0, 0], [0, 4, 0, 3], [2, 0, 6, 0], [0, 0, 1, 7]]
METRICS = {"classes": list(HUSHEM.class_dirs), "archs": {"effnet": {"confusion_matrix": MATRIX}}}


def cells() -> pd.DataFrame:
    return confusion_cells(METRICS, "effnet", HUSHEM)


def click(true: str, pred: str) -> list[dict]:
    return [{"customdata": [true, pred, 3], "x": "a", "y": "b"}]


def test_cell_options_list_errors_by_count_then_the_diagonal():
    keys = list(cell_options(cells()))
    assert keys[:4] == ["02_Tapered|04_Amorphous", "03_Pyriform|01_Normal", "01_Normal|02_Tapered",
                        "04_Amorphous|03_Pyriform"]
    assert all(parse_cell_key(k)[0] != parse_cell_key(k)[1] for k in keys[4:12])  # empty error cells
    assert keys[12:] == [cell_key(c, c) for c in HUSHEM.class_dirs]
    assert cell_options(cells())["02_Tapered|04_Amorphous"].startswith("true Tapered → predicted Amorphous: 3")
    assert parse_cell_key(keys[0]) == ("02_Tapered", "04_Amorphous")


def test_heatmap_grid_is_the_matrix_with_counts_and_row_shares():
    names, counts, text = heatmap_grid(cells(), normalise=False)
    assert names == [HUSHEM.display(c) for c in HUSHEM.class_dirs]
    assert np.array_equal(counts, MATRIX)
    _, shares, _ = heatmap_grid(cells(), normalise=True)
    assert np.allclose(shares.sum(axis=1), 1) and np.isclose(shares[1, 3], 3 / 7)
    assert text[1][3] == "3<br>43 %"


def test_a_click_opens_its_cell_once_until_the_selection_is_cleared():
    state: dict = {}
    assert clicked_cell(click("02_Tapered", "04_Amorphous")) == ("02_Tapered", "04_Amorphous")
    assert cell_to_open(state, "handled", click("02_Tapered", "04_Amorphous")) == ("02_Tapered", "04_Amorphous")
    # back on the page, the same selection is still reported: it must not navigate again
    assert cell_to_open(state, "handled", click("02_Tapered", "04_Amorphous")) is None
    assert cell_to_open(state, "handled", click("03_Pyriform", "01_Normal")) == ("03_Pyriform", "01_Normal")
    assert cell_to_open(state, "handled", []) is None and "handled" not in state
    assert cell_to_open(state, "handled", click("03_Pyriform", "01_Normal")) == ("03_Pyriform", "01_Normal")


def test_points_without_cell_data_are_no_click():
    assert clicked_cell([]) is None and clicked_cell([{"x": 1}]) is None
    state = {"handled": ("a", "b")}
    assert cell_to_open(state, "handled", [{"x": 1}]) is None and not state
