"""Model comparison: every metric in metrics.json per arch, per-fold accuracy, confusion matrices
(click a cell → those images in the misclassification explorer), ROC curves, reliability
diagrams, McNemar tests and Grad-CAM++ faithfulness, with the protocol and the paper's numbers stated
beside ours."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from spermlib.dashboard.tables import (
    PAPER_RESULTS,
    PAPER_TITLE,
    SUBSET_NOTE,
    arch_title,
    cell_label,
    confusion_cells,
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
from views.common import MISTAKES_PRESET, cached_faithfulness, cached_metrics, dataset_picker


def open_in_mistakes(dataset: str, arch: str, true: str, pred: str) -> None:
    """Preset the misclassification explorer's filters on one confusion cell and go there."""
    st.session_state[MISTAKES_PRESET] = {"dataset": dataset, "arch": arch, "true": [true], "pred": [pred],
                                         "errors_only": true != pred}
    st.switch_page("views/mistakes.py")


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
st.markdown(f"**Our protocol:** {metrics.get('protocol', '—')}. Spread: {metrics.get('std', '—')}; "
            f"95 % CI: {metrics.get('ci95', '—')}. Split manifest `{metrics.get('split_manifest', '—')}` "
            f"(sha256 {str(metrics.get('split_sha256', ''))[:12]}…), generated {metrics.get('generated', '—')}.")
if paper:
    st.markdown(f"**Paper** ({PAPER_TITLE}) on {spec.folder}: accuracy {pct(paper['accuracy'])}, macro-F1 "
                f"{num(paper['macro_f1'])} — {paper['protocol']}. Not the same protocol as ours: a single "
                "hold-out split has no spread, and our CV folds are grouped by pixel hash.")
if not metrics.get("full_dataset", False):
    st.warning(f"These results were computed on a {SUBSET_NOTE}; they are not comparable with the paper.")
st.caption(f"Data: {spec.citation}")

st.subheader("All metrics")
st.dataframe(metrics_table(metrics), hide_index=True, width="stretch")
st.markdown("Per class (pooled out-of-fold predictions)")
st.dataframe(per_class_table(metrics, spec), hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f")
                            for c in ("Precision", "Recall", "F1", "ROC-AUC")})

st.subheader("Accuracy per test fold")
folds = per_fold_table(metrics)
fig = px.bar(folds, x="fold", y="accuracy", color="model", barmode="group", hover_data=["n", "macro_f1"],
             labels={"fold": "test fold", "accuracy": "accuracy", "model": "model"})
fig.update_yaxes(range=[0, 1], tickformat=".0%")
if paper:
    fig.add_hline(y=paper["accuracy"], line_dash="dot", annotation_text="paper (hold-out)")
st.plotly_chart(fig, width="stretch")

st.subheader("Confusion matrices")
st.caption("Rows: true class, columns: predicted class. Click a cell to open those images in the "
           "misclassification explorer (or use the picker below the matrices).")
normalise = st.toggle("Row-normalised (share of the true class)", value=False, key="compare_cm_norm")
cols = st.columns(len(archs))
for col, arch in zip(cols, archs):
    cells = confusion_cells(metrics, arch, spec)
    names = list(dict.fromkeys(cells["true_display"]))
    z = cells["row_share" if normalise else "count"].to_numpy().reshape(len(names), len(names))
    text = [[f"{c['count']}<br>{100 * c['row_share']:.0f} %" for c in cells.iloc[i * len(names):(i + 1) * len(names)]
             .to_dict("records")] for i in range(len(names))]
    heat = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", text=text, texttemplate="%{text}",
                                showscale=False, hoverinfo="skip"))
    # Heat maps are not selectable in plotly: nearly invisible markers on the cell centres are.
    heat.add_trace(go.Scatter(
        x=cells["pred_display"], y=cells["true_display"], mode="markers",
        marker={"size": 40, "symbol": "square", "opacity": 0.01},
        customdata=cells[["true", "pred", "count"]].to_numpy(),
        hovertemplate="true %{y} → predicted %{x}: %{customdata[2]} images<extra>click to open</extra>",
        showlegend=False))
    heat.update_layout(title=arch_title(arch), height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                       xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed")
    with col:
        event = st.plotly_chart(heat, width="stretch", on_select="rerun", selection_mode="points",
                                key=f"compare_cm_{spec.name}_{arch}")
    # Act once per new click: a selection that is still there when the user comes back must not
    # send them away again.
    handled_key = f"compare_cm_handled_{spec.name}_{arch}"
    points = event.selection.points if event else []
    if points and points[0].get("customdata"):
        true, pred = (str(v) for v in points[0]["customdata"][:2])
        if st.session_state.get(handled_key) != (true, pred):
            st.session_state[handled_key] = (true, pred)
            open_in_mistakes(spec.name, arch, true, pred)
    else:
        st.session_state.pop(handled_key, None)

c1, c2, c3 = st.columns([1, 3, 1], vertical_alignment="bottom")
cell_arch = c1.selectbox("Model", archs, format_func=arch_title, key="compare_cell_arch")
cell_records = confusion_cells(metrics, cell_arch, spec).to_dict("records")
off_diagonal = sorted((c for c in cell_records if c["true"] != c["pred"]), key=lambda c: -c["count"])
options = off_diagonal + [c for c in cell_records if c["true"] == c["pred"]]
# Options are "true|pred" keys, the same for every model, so the choice survives a change of model.
labels = {f"{c['true']}|{c['pred']}": cell_label(c) for c in options}
cell_key = c2.selectbox("Confusion-matrix cell", list(labels), format_func=labels.get, key="compare_cell")
if c3.button("Open these images", key="compare_open_cell"):
    true, pred = cell_key.split("|")
    open_in_mistakes(spec.name, cell_arch, true, pred)

st.subheader("ROC curves (one-vs-rest, pooled out-of-fold)")
cols = st.columns(len(archs))
for col, arch in zip(cols, archs):
    roc = roc_table(metrics, arch, spec)
    auc = metrics["archs"][arch].get("roc_auc_ovr_macro")
    fig = px.line(roc, x="fpr", y="tpr", color="class",
                  labels={"fpr": "false-positive rate", "tpr": "true-positive rate"},
                  title=f"{arch_title(arch)} — macro AUC {num(auc)}")
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "grey"})
    fig.update_layout(height=380, legend={"orientation": "h", "y": -0.25}, margin={"l": 10, "r": 10, "t": 40})
    col.plotly_chart(fig, width="stretch")

st.subheader("Calibration (reliability diagram)")
rel = reliability_table(metrics)
fig = px.line(rel, x="confidence", y="accuracy", color="model", markers=True, hover_data=["lo", "hi", "count"],
              labels={"confidence": "mean confidence in bin", "accuracy": "accuracy in bin"})
fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "grey"})
fig.update_xaxes(range=[0, 1])
fig.update_yaxes(range=[0, 1])
st.plotly_chart(fig, width="stretch")
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
    st.info(f"Not scored yet: `python -m spermlib faithfulness --dataset {spec.name} --per-class 2` writes it.")
else:
    st.dataframe(faithfulness_table(faith), hide_index=True, width="stretch")
    st.caption(f"{faith.get('protocol', '—')}. ROAD combined: confidence kept when the least relevant pixels are "
               "imputed minus when the most relevant are (higher = more faithful). CamMult Δconfidence: change "
               "in confidence when the image is multiplied by its map. The control scores each image with "
               "another image's map: a faithful explanation beats it.")
