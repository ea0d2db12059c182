"""The Overview's lead: key figures, the headline chart and the worked example, from the results files."""

from __future__ import annotations

import pandas as pd
import pytest

from spermlib.dashboard import charts, palette
from spermlib.dashboard.headline import key_figures, plain_board
from spermlib.dashboard.tables import PAPER_RESULTS
from spermlib.data.datasets import get_dataset
from spermlib.store.results import entry_name

SMIDS = get_dataset("smids")


def _row(dataset, arch, acc, lo, hi, n=100, paper=None):
    return {"dataset": dataset, "arch": arch, "model": arch, "n_images": n, "accuracy_mean": acc,
            "accuracy_std": 0.01, "accuracy_pooled": acc + 0.001, "accuracy_ci_lo": lo, "accuracy_ci_hi": hi,
            "paper_accuracy": paper}


@pytest.fixture
def board():
    return pd.DataFrame([
        _row("smids", "simplecnn", 0.81, 0.79, 0.83, n=2992),
        _row("smids", "effnet_cbam", 0.899, 0.888, 0.909, n=2992, paper=0.902),
        _row("smids", entry_name("effnet_cbam", tta=True), 0.908, 0.898, 0.918, n=2992),
        _row("hushem", "effnet_cbam", 0.861, 0.81, 0.907, n=216, paper=0.939),
    ])


def test_key_figures_are_the_shipped_default_beside_the_paper(board):
    """The cards lead with what Classify and `predict` do by default: the paper's model with TTA where scored."""
    figures = key_figures(board)
    assert [f.label for f in figures] == ["SMIDS accuracy", "HuSHeM accuracy", "Images scored", "Models compared"]
    smids = figures[0]
    assert smids.value == "90.8 %" and smids.delta == "+0.6 pts vs paper" and "reports 90.2 %" in smids.help
    assert "test-time augmentation" in smids.help and "one view: 89.9 %" in smids.help
    hushem = figures[1]  # no TTA entry scored: its one-view row, said plainly
    assert hushem.delta == "−7.8 pts vs paper" and "test-time augmentation" not in hushem.help
    assert figures[2].value == "3,208"  # 2992 + 216: one row per dataset, not the TTA row beside the one-view one
    assert figures[3].value == "2"  # TTA entries are not models of their own


def test_key_figures_fall_back_to_one_view_without_tta_entries(board):
    smids = key_figures(plain_board(board))[0]
    assert smids.value == "89.9 %" and smids.delta == "−0.3 pts vs paper" and "test-time" not in smids.help


def test_plain_board_drops_tta_entries(board):
    assert entry_name("effnet_cbam", tta=True) not in set(plain_board(board)["arch"])
    assert len(plain_board(board)) == 3


def test_headline_chart_shows_pooled_accuracy_with_its_ci_and_marks_the_paper(board):
    fig = charts.headline_figure(plain_board(board))
    ours = [t for t in fig.data if t.name != "paper (hold-out split)"]
    paper = [t for t in fig.data if t.name == "paper (hold-out split)"]
    assert len(ours) == 3 and len(paper) == 2  # one marker per model and dataset; the paper per dataset
    cbam = next(t for t in ours if t.name == "effnet_cbam" and t.xaxis == "x")
    assert cbam.x[0] == pytest.approx(0.9)  # pooled accuracy (the CI's centre), not the fold mean
    assert cbam.error_x.array[0] == pytest.approx(0.909 - 0.9) and cbam.error_x.arrayminus[0] == pytest.approx(
        0.9 - 0.888)
    assert cbam.marker.color == palette.model_colour("effnet_cbam")
    assert sorted(t.x[0] for t in paper) == sorted(PAPER_RESULTS[d]["accuracy"] for d in ("smids", "hushem"))
    assert [a.text for a in fig.layout.annotations] == ["SMIDS", "HuSHeM"]


