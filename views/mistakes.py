"""Misclassification explorer: out-of-fold errors filtered by class, confidence and model
disagreement; Grad-CAM++ of each arch's fold model that never saw the image; CSV export.

Filters can be preset by the comparison page (a confusion-matrix cell) through
``st.session_state["mistakes_preset"]``, applied once before the widgets are created.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from spermlib.dashboard.tables import (
    MistakeFilter,
    arch_title,
    disagreement,
    export_table,
    filter_predictions,
    mark_present,
    missing_results_message,
    prediction_table,
    to_csv_bytes,
)
from spermlib.data.imageio import ImageError, load_rgb
from spermlib.inference.explain import overlay
from spermlib.inference.predict import Predictor
from spermlib.store.checkpoints import available_folds
from spermlib.store.paths import default_checkpoints_dir
from spermlib.store.results import base_arch
from views.common import (
    MISTAKES_PRESET,
    cached_oofs,
    data_root_or_error,
    dataset_picker,
    get_predictor,
    image_thumbnail,
)

PAGE_SIZE = 24
GALLERY_COLUMNS = 6


def apply_preset() -> None:
    """Copy a preset from another page into this page's widget keys (before the widgets exist)."""
    preset = st.session_state.pop(MISTAKES_PRESET, None)
    if not preset:
        return
    ds = preset["dataset"]
    st.session_state["mistakes_dataset"] = ds
    st.session_state[f"mistakes_arch_{ds}"] = preset["arch"]
    st.session_state[f"mistakes_true_{ds}"] = list(preset.get("true", []))
    st.session_state[f"mistakes_pred_{ds}"] = list(preset.get("pred", []))
    st.session_state["mistakes_errors_only"] = bool(preset.get("errors_only", True))
    for key in ("mistakes_conf", "mistakes_disagree", "mistakes_page", f"mistakes_image_{ds}"):
        st.session_state.pop(key, None)  # back to the widget's default: show the whole cell


@st.cache_data(show_spinner=False, max_entries=512)
def explain_image(_predictor: Predictor, dataset: str, arch: str, checkpoints: str, image_path: str, fold: int,
                  class_idx: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Grad-CAM++ overlay (and CBAM overlay) of the fold-``fold`` model for one image file."""
    exp = _predictor.explain(load_rgb(image_path), class_idx=class_idx, folds=[fold])
    cam = overlay(exp.rgb, exp.gradcam, alpha=0.5)
    att = overlay(exp.rgb, exp.cbam, alpha=0.5) if exp.cbam is not None else None
    return cam, att


st.title("Misclassification explorer")
st.markdown("Out-of-fold predictions: every image was classified by the fold model that never saw it in "
            "training or model selection, so these are honest errors.")
apply_preset()
spec = dataset_picker(key="mistakes_dataset")
oofs = cached_oofs(spec.name)
if not oofs:
    st.info(missing_results_message(spec.name))
    st.stop()
root = data_root_or_error(spec)

archs = list(oofs)
if st.session_state.get(f"mistakes_arch_{spec.name}") not in archs:
    st.session_state.pop(f"mistakes_arch_{spec.name}", None)
c1, c2, c3 = st.columns(3)
arch = c1.selectbox("Model", archs, format_func=arch_title, key=f"mistakes_arch_{spec.name}")
true_classes = c2.multiselect("True class (empty = any)", list(spec.class_dirs), format_func=spec.display,
                              key=f"mistakes_true_{spec.name}")
pred_classes = c3.multiselect("Predicted class (empty = any)", list(spec.class_dirs), format_func=spec.display,
                              key=f"mistakes_pred_{spec.name}")
c1, c2, c3 = st.columns([2, 1, 1])
confidence = c1.slider("Confidence of the prediction", 0.0, 1.0, (0.0, 1.0), step=0.01, key="mistakes_conf")
errors_only = c2.checkbox("Errors only", value=True, key="mistakes_errors_only")
plain = [a for a in archs if "+" not in a]
disagree_only = c3.checkbox("Models disagree", value=False, key="mistakes_disagree", disabled=len(plain) < 2,
                            help=f"Images on which the out-of-fold predictions of {', '.join(map(arch_title, plain))} "
                                 "are not all the same.")

others = {a: oofs[a] for a in plain if a != arch}
table = prediction_table(oofs[arch], spec, disagreement(oofs), others)
flt = MistakeFilter(true_classes, pred_classes, tuple(confidence), errors_only, disagree_only)
filtered = filter_predictions(table, flt)
export = export_table(filtered, spec)
n_err = int((~table["correct"]).sum())
st.markdown(f"**{len(filtered)}** images match — of {len(table)} out-of-fold predictions of "
            f"{arch_title(arch)} ({n_err} errors).")
st.dataframe(export, hide_index=True, width="stretch",
             column_config={"confidence": st.column_config.ProgressColumn(format="%.2f", min_value=0, max_value=1),
                            "p_true": st.column_config.NumberColumn(format="%.3f")})
st.download_button("Download this list as CSV", to_csv_bytes(export), file_name=f"{spec.name}_{arch}_mistakes.csv",
                   mime="text/csv", key="mistakes_download")

if root is None or filtered.empty:
    st.stop()
present = mark_present(filtered, root)
shown = present[present["file_present"]].reset_index(drop=True)
missing = len(present) - len(shown)
if missing:
    st.info(f"{missing} of {len(present)} listed images are not under {root}: these results were computed on "
            "images this installation does not have (e.g. the full dataset, while only the bundled sample is "
            "here). They stay in the table and the CSV but have no thumbnail. Point $SPERM_DATA_DIR at the "
            "full dataset to see them.")
if shown.empty:
    st.stop()

st.subheader("Gallery")
pages = (len(shown) - 1) // PAGE_SIZE + 1
if st.session_state.get("mistakes_page", 1) > pages:  # the filter shrank the list
    st.session_state["mistakes_page"] = 1
page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="mistakes_page") if pages > 1 else 1
chunk = shown.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
cols = st.columns(GALLERY_COLUMNS)
for i, row in enumerate(chunk.itertuples(index=False)):
    thumb = image_thumbnail(str(Path(root) / row.path))
    with cols[i % GALLERY_COLUMNS]:
        if thumb is None:
            st.error(f"{row.path}: not a readable image")
        else:
            st.image(thumb, caption=f"{row.true_display} → {row.pred_display} · {row.confidence:.0%} · fold {row.fold}",
                     width="stretch")

st.subheader("Why? Grad-CAM++ of the models that never saw the image")
image_labels = {r.path: f"{r.path} — true {r.true_display}, predicted {r.pred_display} ({r.confidence:.0%})"
                for r in shown.itertuples(index=False)}
choice = st.selectbox("Image", list(image_labels), format_func=image_labels.get, key=f"mistakes_image_{spec.name}")
explain_what = st.radio("Explain the class", ["predicted by that model", "true class"], horizontal=True,
                        key="mistakes_cam_class")
image_file = Path(root) / choice
try:
    original = load_rgb(image_file, name=choice)
except ImageError as err:
    st.error(str(err))
    st.stop()

checkpoints = default_checkpoints_dir()
cols = st.columns(1 + len(plain))
true_label = shown.set_index("path").at[choice, "label"]
cols[0].image(np.asarray(original), caption=f"{choice} (true: {spec.display(true_label)})", width="stretch")
with st.spinner("Computing Grad-CAM++ …"):
    for col, a in zip(cols[1:], plain):
        with col:
            st.markdown(f"**{arch_title(a)}**")
            rows = oofs[a][oofs[a]["path"] == choice]
            if rows.empty:
                st.info("No out-of-fold prediction of this model for this image.")
                continue
            r = rows.iloc[0]
            fold = int(r["fold"])
            if fold not in available_folds(spec, base_arch(a), checkpoints):
                st.info(f"The fold-{fold} checkpoint of {arch_title(a)} is not installed in {checkpoints}; train it "
                        f"with `python -m spermlib train --dataset {spec.name} --arch {base_arch(a)} --fold {fold}`.")
                continue
            predictor = get_predictor(spec.name, base_arch(a))  # None after a notice if it cannot be loaded
            if predictor is None:
                continue
            target = r["pred"] if explain_what.startswith("predicted") else r["label"]
            class_idx = predictor.classes.index(target)
            cam, att = explain_image(predictor, spec.name, a, str(checkpoints), str(image_file), fold, class_idx)
            conf = float(r[f"prob_{r['pred']}"])
            verdict = "✅" if r["pred"] == r["label"] else "❌"
            st.image(cam, width="stretch",
                     caption=f"{verdict} predicted {spec.display(r['pred'])} ({conf:.0%}); map for "
                             f"{spec.display(target)}; fold-{fold} model (never saw this image)")
            if att is not None:
                st.image(att, width="stretch", caption="CBAM spatial attention (0.5 = neutral)")
