"""One colour per model and per class on every chart, and charts that stay legible in a grid."""

from __future__ import annotations

import pandas as pd
import pytest

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.dashboard import charts, palette
from spermlib.dashboard.compare import chart_entries
from spermlib.dashboard.tables import arch_title
from spermlib.data.datasets import DATASETS, get_dataset
from spermlib.store.results import entry_name

SMIDS = get_dataset("smids")
ENTRIES = [name for arch in ARCHS for name in (arch, entry_name(arch, tta=True))]


def test_every_model_and_class_has_its_own_colour():
    models = [palette.model_colour(a) for a in ARCHS]
    assert len(set(models)) == len(ARCHS)
    for spec in DATASETS.values():
        colours = palette.class_colours(spec)
        assert list(colours) == list(spec.class_dirs) and len(set(colours.values())) == spec.num_classes
    # the normal class looks the same in both tasks
    assert palette.class_colour(SMIDS, "Normal_Sperm") == palette.class_colour(get_dataset("hushem"), "01_Normal")


def test_tta_entry_keeps_its_models_hue_lightened():
    plain, tta = palette.model_colour("effnet_cbam"), palette.model_colour(entry_name("effnet_cbam", tta=True))
    assert tta == palette.lighten(plain, palette.TTA_LIGHTEN) and tta != plain
    assert palette.lighten("#000000", 0.5) == "#808080" and palette.lighten("#123456", 0) == "#123456"
    assert palette.model_colour_map(["effnet", "effnet+tta"]) == {
        "EfficientNet": palette.model_colour("effnet"), "EfficientNet (TTA)": palette.model_colour("effnet+tta")}


def test_chart_grid_keeps_three_per_row_with_the_papers_model_first():
    assert chart_entries(ENTRIES, with_tta=False) == ["effnet_cbam", "effnet", "simplecnn"]
    with_tta = chart_entries(ENTRIES, with_tta=True)
    assert with_tta[:3] == ["effnet_cbam", "effnet", "simplecnn"]
    assert with_tta[3:] == [entry_name(a, tta=True) for a in ("effnet_cbam", "effnet", "simplecnn")]
    rows = charts.rows_of(with_tta)
    assert [len(r) for r in rows] == [3, 3] and all(len(r) <= charts.GRID_COLUMNS for r in rows)
    assert charts.rows_of(list("abcd"), 3) == [["a", "b", "c"], ["d"]]
    assert chart_entries(ENTRIES, False)[0] == DEFAULT_ARCH


def _cells(spec):
    classes = list(spec.class_dirs)
    return pd.DataFrame([{"true": t, "pred": p, "true_display": spec.display(t), "pred_display": spec.display(p),
                          "count": 3 if t == p else 1, "row_share": 0.5} for t in classes for p in classes])


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_confusion_matrix_has_every_class_on_both_axes_and_a_short_title(dataset):
    spec = DATASETS[dataset]
    fig = charts.confusion_matrix_figure(_cells(spec), arch_title("effnet_cbam+tta"), normalise=True)
    heat = fig.data[0]
    names = [spec.display(c) for c in spec.class_dirs]
    assert list(heat.x) == names and list(heat.y) == names
    assert fig.layout.xaxis.tickangle == 0 and fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.title.text.startswith("<b>EfficientNet + CBAM (TTA)</b>")


def test_roc_colours_by_class_and_puts_the_auc_on_a_second_title_line():
    roc = pd.DataFrame({"label": ["Normal_Sperm"] * 2 + ["Non-Sperm"] * 2,
                        "class": ["Normal (AUC 0.9)"] * 2 + ["Non-sperm (AUC 0.8)"] * 2,
                        "fpr": [0, 1, 0, 1], "tpr": [0, 1, 0, 1]})
    fig = charts.roc_figure(roc, SMIDS, "EfficientNet + CBAM (TTA)", "0.950")
    colours = {t.name: t.line.color for t in fig.data}
    assert colours == {"Normal (AUC 0.9)": palette.class_colour(SMIDS, "Normal_Sperm"),
                       "Non-sperm (AUC 0.8)": palette.class_colour(SMIDS, "Non-Sperm")}
    assert "<br>" in fig.layout.title.text and "macro AUC 0.950" in fig.layout.title.text
    assert fig.layout.legend.orientation == "h"  # below the plot: the plot keeps the chart's width


def test_model_charts_use_the_model_palette():
    folds = pd.DataFrame({"arch": ["effnet_cbam", "simplecnn"], "model": ["EfficientNet + CBAM", "SimpleCNN"],
                          "fold": [0, 0], "n": [10, 10], "accuracy": [0.9, 0.8], "macro_f1": [0.9, 0.8]})
    fig = charts.fold_accuracy_figure(folds, paper_accuracy=0.902)
    assert {t.name: t.marker.color for t in fig.data} == {
        "EfficientNet + CBAM": palette.model_colour("effnet_cbam"), "SimpleCNN": palette.model_colour("simplecnn")}
    rel = pd.DataFrame({"arch": ["effnet"], "model": ["EfficientNet"], "lo": [0.9], "hi": [1.0], "count": [5],
                        "confidence": [0.95], "accuracy": [0.9]})
    (line,) = [t for t in charts.reliability_figure(rel).data if t.name == "EfficientNet"]
    assert line.line.color == palette.model_colour("effnet")


def test_probability_bars_in_class_colours_with_the_prediction_singled_out():
    fig = charts.probability_figure({"Normal_Sperm": 0.7, "Abnormal_Sperm": 0.2, "Non-Sperm": 0.1}, "Normal_Sperm",
                                    SMIDS, "ensemble probability")
    (bars,) = fig.data
    assert list(bars.marker.color) == [palette.class_colour(SMIDS, c) for c in SMIDS.class_dirs]
    assert list(bars.marker.opacity) == [1.0, palette.MUTED, palette.MUTED]


def test_robustness_figure_one_labelled_heat_map_per_arch():
    from spermlib.dashboard.charts import robustness_figure

    rows = [{"severity": i + 1, "accuracy_drop": d} for i, d in enumerate((-0.0004, 0.05, 0.2))]
    report = {"archs": {a: {"corruptions": {"jpeg": rows, "blur": rows}} for a in ("effnet_cbam", "effnet")},
              "corruptions": {"jpeg": {}, "blur": {}}}
    for arch, title in (("effnet", "EfficientNet"), ("effnet_cbam", "EfficientNet + CBAM")):
        fig = robustness_figure(report, arch)
        assert [t.type for t in fig.data] == ["heatmap"] and fig.layout.title.text == title
        assert fig.data[0].texttemplate == "%{text}" and list(fig.data[0].y) == ["jpeg", "blur"]
        assert list(fig.data[0].text[0]) == ["0.0", "5.0", "20.0"]  # no "-0.0" for a gain that rounds to nothing
