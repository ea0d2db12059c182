"""spermlib.dashboard.mistakes: the explorer's preset, plain vs TTA entries, and which fold model
explains an image (the one that never saw it) and whether it is installed."""

from __future__ import annotations

import pandas as pd
import pytest

from spermlib.dashboard import mistakes as vm
from spermlib.dashboard.state import MistakesPreset
from spermlib.data.datasets import get_dataset
from spermlib.store.cards import checkpoint_path
from spermlib.store.results import entry_name, prob_columns

HUSHEM = get_dataset("hushem")
CLASSES = list(HUSHEM.class_dirs)


def oof(rows: list[tuple[str, str, int, str, list[float]]]) -> pd.DataFrame:
    """OOF table of (path, label, fold, pred, probabilities) rows, with the real column names."""
    return pd.DataFrame([{"path": p, "label": lab, "fold": k, "pred": pred, **dict(zip(prob_columns(CLASSES), probs))}
                         for p, lab, k, pred, probs in rows])


@pytest.fixture
def oofs() -> dict[str, pd.DataFrame]:
    img = "02_Tapered/a.bmp"
    return {
        "effnet": oof([(img, "02_Tapered", 3, "04_Amorphous", [0.1, 0.2, 0.1, 0.6]),
                       ("01_Normal/b.bmp", "01_Normal", 1, "01_Normal", [0.7, 0.1, 0.1, 0.1])]),
        entry_name("effnet", tta=True): oof([(img, "02_Tapered", 3, "02_Tapered", [0.1, 0.5, 0.1, 0.3])]),
        "effnet_cbam": oof([(img, "02_Tapered", 3, "02_Tapered", [0.05, 0.85, 0.05, 0.05])]),
        "simplecnn": oof([("01_Normal/b.bmp", "01_Normal", 1, "01_Normal", [0.4, 0.2, 0.2, 0.2])]),
    }


def install(root, arch: str, *folds: int) -> None:
    for k in folds:
        path = checkpoint_path(HUSHEM, arch, k, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_plain_entries_leave_out_tta():
    assert vm.plain_entries(["simplecnn", "effnet", entry_name("effnet", tta=True), "effnet_cbam"]) == [
        "simplecnn", "effnet", "effnet_cbam"]


def test_fold_explanations_use_the_fold_of_the_oof_row_and_check_it_is_installed(oofs, tmp_path):
    install(tmp_path, "effnet", 0, 1, 2, 4)  # fold 3 missing
    install(tmp_path, "effnet_cbam", 3)
    items = {i.entry: i for i in vm.fold_explanations(oofs, "02_Tapered/a.bmp", HUSHEM, tmp_path)}
    assert list(items) == ["effnet_cbam", "effnet", "simplecnn"]  # the paper's model first; no TTA column

    effnet = items["effnet"]
    assert (effnet.fold, effnet.installed, effnet.ready) == (3, False, False)
    assert effnet.pred == "04_Amorphous" and effnet.confidence == pytest.approx(0.6) and not effnet.correct
    assert "--arch effnet --fold 3" in effnet.notice("hushem", tmp_path, "EfficientNet")

    cbam = items["effnet_cbam"]
    assert (cbam.fold, cbam.installed, cbam.ready, cbam.correct) == (3, True, True, True)
    assert cbam.confidence == pytest.approx(0.85) and cbam.notice("hushem", tmp_path, "x") is None
    assert cbam.target(explain_true_class=False) == "02_Tapered"
    assert effnet.target(explain_true_class=True) == "02_Tapered"
    assert effnet.target(explain_true_class=False) == "04_Amorphous"

    simple = items["simplecnn"]
    assert simple.fold is None and not simple.ready
    assert "No out-of-fold prediction" in simple.notice("hushem", tmp_path, "SimpleCNN")


def test_tta_entries_get_no_column_of_their_own_but_are_listed(oofs, tmp_path):
    install(tmp_path, "effnet", 3)
    only_tta = {entry_name("effnet", tta=True): oofs[entry_name("effnet", tta=True)]}
    assert vm.fold_explanations(only_tta, "02_Tapered/a.bmp", HUSHEM, tmp_path) == []
    assert vm.mistakes_table(oofs, entry_name("effnet", tta=True), HUSHEM)["pred_effnet"].tolist() == ["04_Amorphous"]


def test_mistakes_table_compares_with_the_other_plain_models(oofs):
    table = vm.mistakes_table(oofs, "effnet", HUSHEM)
    assert {"pred_effnet_cbam", "pred_simplecnn"} <= set(table.columns)
    assert f"pred_{entry_name('effnet', tta=True)}" not in table.columns
    row = table.set_index("path").loc["02_Tapered/a.bmp"]
    assert row["confidence"] == pytest.approx(0.6) and bool(row["disagree"]) and not row["correct"]


def test_a_preset_fills_the_widget_keys_and_resets_the_other_filters():
    state = {vm.CONFIDENCE_KEY: (0.9, 1.0), vm.PAGE_KEY: 3, vm.DISAGREE_KEY: True,
             vm.image_key("hushem"): "x.bmp", vm.image_key("smids"): "y.bmp"}
    MistakesPreset.for_cell("hushem", "effnet", "02_Tapered", "02_Tapered").save(state)
    preset = vm.apply_preset(state)
    assert preset is not None and preset.arch == "effnet"
    assert state == {vm.DATASET_KEY: "hushem", vm.arch_key("hushem"): "effnet",
                     vm.true_key("hushem"): ["02_Tapered"], vm.pred_key("hushem"): ["02_Tapered"],
                     vm.ERRORS_ONLY_KEY: False, vm.image_key("smids"): "y.bmp"}
    assert vm.apply_preset(state) is None  # applied once
