"""Model comparison: every metric in metrics.json per arch, per-fold accuracy, confusion matrices
(click a cell → those images in the misclassification explorer), ROC curves, reliability
diagrams, McNemar tests and Grad-CAM++ faithfulness, with the protocol and the paper's numbers stated
beside ours."""

from __future__ import annotations

import streamlit as st

from spermlib.dashboard import charts
from spermlib.dashboard.compare import (
    Cell,
    cell_options,
    cell_to_open,
    chart_entries,
    has_tta,
    parse_cell_key,
    preferred_order,
)
from spermlib.dashboard.pages import page
from spermlib.dashboard.state import MistakesPreset
from spermlib.dashboard.tables import (
    DETAIL_COLUMNS,
    PAPER_RESULTS,
    PAPER_TITLE,
    SCORE_COLUMNS,
    SUBSET_NOTE,
    arch_title,
    confusion_cells,
    faithfulness_column_groups,
    faithfulness_table,
    mcnemar_table,
    metrics_table,
    missing_results_message,
    num,
    pct,
    per_class_table,
    per_fold_table,
    reliability_table,
    roc_table,
)
from spermlib.dashboard.text import md_code, md_escape
from views.common import cached_faithfulness, cached_metrics, cached_robustness, dataset_picker


def open_in_mistakes(dataset: str, arch: str, cell: Cell) -> None:
    """Preset the misclassification explorer's filters on one confusion cell and go there."""
    MistakesPreset.for_cell(dataset, arch, *cell).save(st.session_state)
    st.switch_page(page("mistakes").file)


def grid(entries: list[str]):
    """(column, entry) pairs, at most ``charts.GRID_COLUMNS`` charts per row (one per row on a phone)."""
    for row in charts.rows_of(entries):
        yield from zip(st.columns(charts.GRID_COLUMNS), row)


st.title("Model comparison")
spec = dataset_picker(key="compare_dataset")
metrics = cached_metrics(spec.name)
if metrics is None:
    st.info(missing_results_message(spec.name))
    st.stop()

archs = list(metrics["archs"])
if not archs:
    st.info(missing_results_message(spec.name))
    st.stop()
paper = PAPER_RESULTS.get(spec.name)
# metrics.json is a file on disk, not code: its strings are shown as text.
shown = {k: md_escape(metrics.get(k, "—")) for k in ("protocol", "std", "ci95", "generated")}
st.markdown(f"**Our protocol:** {shown['protocol']}. Spread: {shown['std']}; 95 % CI: {shown['ci95']}. "
            f"Split manifest {md_code(metrics.get('split_manifest', '—'))} "
            f"(sha256 {md_escape(str(metrics.get('split_sha256', ''))[:12])}…), generated {shown['generated']}.")
if paper:
    st.markdown(f"**Paper** ({PAPER_TITLE}) on {spec.folder}: accuracy {pct(paper['accuracy'])}, macro-F1 "
                f"{num(paper['macro_f1'])} — {paper['protocol']}. Not the same protocol as ours: a single "
                "hold-out split has no spread, and our CV folds are grouped by pixel hash.")
if not metrics.get("full_dataset", False):
    st.warning(f"These results were computed on a {SUBSET_NOTE}; they are not comparable with the paper.")
st.caption(f"Data: {md_escape(spec.citation)}")
scored_with_tta = has_tta(archs)
# On by default where there are TTA scores: `predict` and the Classify page average the 8 views by default.
with_tta = st.toggle("Charts: add the scores with test-time augmentation (TTA)", value=scored_with_tta,
                     key="compare_tta", disabled=not scored_with_tta,
                     help="Each model's predictions averaged over flipped and rotated copies of the image, as Classify "
                          "and `predict` do by default. The tables always list them.")
shown = chart_entries(archs, with_tta)

st.subheader("All metrics")
table = metrics_table(metrics)
st.dataframe(table, hide_index=True, width="stretch", column_order=SCORE_COLUMNS)
# Text columns fitted to their longest cell (about 6 px a character at the table font): auto-sizing caps a column's
# width and cut per-fold input sizes ("224 on fold 0, 160 on folds 1, 2, 3, 4") and the weights' source; the table
# scrolls instead.
st.dataframe(table, hide_index=True, width="stretch", column_order=DETAIL_COLUMNS,
             column_config={c: st.column_config.TextColumn(width=6 * int(table[c].astype(str).str.len().max()) + 24)
                            for c in ("Input (px)", "Pretrained")})
st.markdown("Per class (pooled out-of-fold predictions)")
st.dataframe(per_class_table(metrics, spec), hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f")
                            for c in ("Precision", "Recall", "F1", "ROC-AUC")})

st.subheader("Accuracy per test fold")
folds = per_fold_table(metrics)
st.plotly_chart(charts.fold_accuracy_figure(folds[folds["arch"].isin(shown)], paper and paper["accuracy"]),
                width="stretch", key="compare_folds")

st.subheader("Confusion matrices")
st.caption("Rows: true class, columns: predicted class. Click a cell to open those images in the "
           "misclassification explorer (or use the picker below the matrices).")
normalise = st.toggle("Row-normalised (share of the true class)", value=False, key="compare_cm_norm")
for col, arch in grid(shown):
    chart = charts.confusion_matrix_figure(confusion_cells(metrics, arch, spec), arch_title(arch), normalise)
    with col:
        event = st.plotly_chart(chart, width="stretch", on_select="rerun", selection_mode="points",
                                key=f"compare_cm_{spec.name}_{arch}")
    cell = cell_to_open(st.session_state, f"compare_cm_handled_{spec.name}_{arch}",
                        event.selection.points if event else [])
    if cell is not None:
        open_in_mistakes(spec.name, arch, cell)

c1, c2, c3 = st.columns([1, 3, 1], vertical_alignment="bottom")
cell_arch = c1.selectbox("Model", preferred_order(archs), format_func=arch_title,
                         key="compare_cell_arch")
labels = cell_options(confusion_cells(metrics, cell_arch, spec))
chosen_cell = c2.selectbox("Confusion-matrix cell", list(labels), format_func=labels.get, key="compare_cell")
if c3.button("Open these images", key="compare_open_cell"):
    open_in_mistakes(spec.name, cell_arch, parse_cell_key(chosen_cell))

st.subheader("ROC curves (one-vs-rest, pooled out-of-fold)")
for col, arch in grid(shown):
    fig = charts.roc_figure(roc_table(metrics, arch, spec), spec, arch_title(arch),
                            num(metrics["archs"][arch].get("roc_auc_ovr_macro")))
    col.plotly_chart(fig, width="stretch", key=f"compare_roc_{spec.name}_{arch}")

st.subheader("Calibration (reliability diagram)")
rel = reliability_table(metrics)
st.plotly_chart(charts.reliability_figure(rel[rel["arch"].isin(shown)]), width="stretch", key="compare_reliability")
st.caption("Top-label confidence in equal-width bins; points on the diagonal are perfectly calibrated. "
           "ECE per model is in the table above.")

st.subheader("Are the differences significant? (exact McNemar tests)")
mc = mcnemar_table(metrics)
if mc.empty:
    st.info("McNemar tests need out-of-fold predictions of at least two models.")
else:
    st.dataframe(mc, hide_index=True, width="stretch",
                 column_config={"p-value (exact McNemar)": st.column_config.NumberColumn(format="%.4f")})
    st.caption("On the images both models scored: a small p-value means the two models' errors differ more "
               "than chance would explain. No correction for multiple comparisons is applied.")

st.subheader("Do the explanations show what the model used? (Grad-CAM++ faithfulness)")
faith = cached_faithfulness(spec.name)
if faith is None:
    st.info(f"Not scored yet: `spermlib faithfulness --dataset {spec.name} --per-class 2` writes it.")
else:
    table = faithfulness_table(faith)
    for columns in faithfulness_column_groups(table):
        st.dataframe(table, hide_index=True, width="stretch", column_order=columns)
    st.caption(f"{faith.get('protocol', '—')}. ROAD combined: confidence kept when the least relevant pixels are "
               "imputed minus when the most relevant are (higher = more faithful). CamMult Δconfidence: change "
               "in confidence when the image is multiplied by its map. The control scores each image with "
               "another image's map: a faithful explanation beats it.")

st.subheader("How much does a changed image cost? (robustness)")
robust = cached_robustness(spec.name)
if robust is None:
    st.info(f"Not run yet: `spermlib robustness --dataset {spec.name}` writes it.")
else:
    # Like the other charts: the models, then (with the toggle) the same models under TTA (`robustness --tta`).
    for col, arch in grid(chart_entries(list(robust["archs"]), with_tta)):
        col.plotly_chart(charts.robustness_figure(robust, arch), width="stretch",
                         key=f"compare_robustness_{spec.name}_{arch}")
    protocol = robust.get("protocol", "")
    params = "; ".join(f"{name} {' / '.join(f'{v:g}' for v in c['severities'])} ({c['parameter']})"
                       for name, c in robust["corruptions"].items())
    st.caption("Points of out-of-fold accuracy lost against clean images, per corruption and severity (negative: "
               "a gain). Clean accuracy: " + ", ".join(
                   f"{arch_title(a)} {100 * e['clean']['accuracy']:.1f} %" for a, e in robust["archs"].items())
               + f". Parameters (mild / middle / strong): {params}. {protocol[:1].upper() + protocol[1:]}.")
