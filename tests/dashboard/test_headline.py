"""The Overview's lead: key figures, the headline chart and the worked example, from the results files."""

from __future__ import annotations

import pandas as pd
import pytest

from spermlib.dashboard import charts, palette
from spermlib.dashboard.compare import default_entry, preferred_order
from spermlib.dashboard.headline import ONE_VIEW, TTA_VIEWS, default_board, key_figures, plain_board
from spermlib.dashboard.tables import PAPER_COLUMN, PAPER_RESULTS, leaderboard_display
from spermlib.data.datasets import get_dataset
from spermlib.store.results import entry_name

SMIDS = get_dataset("smids")


def _row(dataset, arch, acc, lo, hi, n=100, paper=None):
    return {"dataset": dataset, "arch": arch, "model": arch, "n_images": n, "accuracy_mean": acc,
            "accuracy_std": 0.01, "accuracy_pooled": acc + 0.001, "accuracy_ci_lo": lo, "accuracy_ci_hi": hi,
            "macro_f1_mean": acc - 0.01, "macro_f1_std": 0.01, "paper_accuracy": paper,
            "paper_macro_f1": paper and paper + 0.01}


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
    assert [f.label for f in figures] == ["SMIDS accuracy, TTA ×8", "HuSHeM accuracy", "Images scored",
                                          "Models compared"]
    smids = figures[0]  # the default inference leads; the one view is beside it, labelled, on the card itself
    assert smids.value == "90.8 %" and smids.delta == "+0.6 pts vs paper · one view 89.9 %"
    assert "reports 90.2 %" in smids.help and "8 flips and turns" in smids.help
    hushem = figures[1]  # no TTA entry scored: its one-view row, said plainly
    assert hushem.delta == "−7.8 pts vs paper" and "TTA" not in hushem.help
    assert figures[2].value == "3,208"  # 2992 + 216: one row per dataset, not the TTA row beside the one-view one
    assert figures[3].value == "2"  # TTA entries are not models of their own


def test_key_figures_fall_back_to_one_view_without_tta_entries(board):
    smids = key_figures(plain_board(board))[0]
    assert smids.label == "SMIDS accuracy" and smids.value == "89.9 %" and smids.delta == "−0.3 pts vs paper"
    assert "TTA" not in smids.help


def test_plain_board_drops_tta_entries(board):
    assert entry_name("effnet_cbam", tta=True) not in set(plain_board(board)["arch"])
    assert len(plain_board(board)) == 3


def test_headline_chart_shows_pooled_accuracy_with_its_ci_and_marks_the_paper(board):
    fig = charts.headline_figure(default_board(board))
    ours = [t for t in fig.data if t.name not in ("paper (hold-out split)", ONE_VIEW)]
    paper = [t for t in fig.data if t.name == "paper (hold-out split)"]
    one_view = [t for t in fig.data if t.name == ONE_VIEW]
    assert len(ours) == 3 and len(paper) == 2  # one marker per model and dataset; the paper per dataset
    cbam = next(t for t in ours if t.name == f"EfficientNet + CBAM ({TTA_VIEWS})")  # the default inference leads
    assert cbam.x[0] == pytest.approx(0.909)  # pooled accuracy (the CI's centre), not the fold mean
    assert cbam.error_x.array[0] == pytest.approx(0.918 - 0.909) and cbam.error_x.arrayminus[0] == pytest.approx(
        0.909 - 0.898)
    (beside,) = one_view  # the one view beside it, on the same row, only where it is not the lead
    assert beside.y == cbam.y and beside.x[0] == pytest.approx(0.9) and beside.marker.symbol == "circle-open"
    assert cbam.marker.color == palette.model_colour("effnet_cbam") == beside.marker.color
    assert sorted(t.x[0] for t in paper) == sorted(PAPER_RESULTS[d]["accuracy"] for d in ("smids", "hushem"))
    assert [a.text for a in fig.layout.annotations] == ["SMIDS", "HuSHeM"]




def test_default_board_has_one_row_per_model_led_by_its_default_inference(board):
    lead = default_board(board)
    assert list(zip(lead["dataset"], lead["arch"], lead["inference"])) == [
        ("smids", "effnet_cbam+tta", TTA_VIEWS), ("smids", "simplecnn", ONE_VIEW), ("hushem", "effnet_cbam", ONE_VIEW)]
    smids = lead.iloc[0]
    assert smids["accuracy_mean"] == 0.908 and smids["one_view_accuracy_mean"] == 0.899
    assert smids["paper_accuracy"] == 0.902  # the paper's number stays on its model's (now TTA-led) row
    assert pd.isna(lead.iloc[1]["one_view_accuracy_mean"])  # a one-view row has no second figure


def test_leaderboard_shows_the_one_view_accuracy_beside_the_default_inference(board):
    shown = leaderboard_display(default_board(board)).set_index("Model")
    assert list(shown.index) == ["EfficientNet + CBAM (TTA ×8); one view 89.9 %", "simplecnn", "effnet_cbam"]
    assert shown.iloc[0]["Accuracy (mean ± std)"] == "90.8 ± 1.0 %"  # the default inference leads
    assert shown.iloc[0][PAPER_COLUMN] == "90.2 % / 0.912" and shown.iloc[1][PAPER_COLUMN] == "—"
    assert len(shown.columns) == 5  # Dataset and four figures beside the model: narrow enough for a phone


def test_pickers_open_on_the_paper_model_as_run_by_default_never_on_the_weakest():
    entries = ["simplecnn", "effnet", "effnet_cbam", "simplecnn+tta", "effnet+tta", "effnet_cbam+tta"]
    assert preferred_order(entries) == ["effnet_cbam+tta", "effnet_cbam", "effnet+tta", "effnet", "simplecnn+tta",
                                        "simplecnn"]
    assert default_entry(["simplecnn", "effnet"]) == "effnet"  # the paper's model not installed: not the weakest
    assert default_entry([]) is None
