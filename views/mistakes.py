"""Misclassification explorer: out-of-fold errors filtered by class, confidence and model
disagreement; Grad-CAM++ of each arch's fold model that never saw the image; CSV export.

Filters can be preset by the comparison page (a confusion-matrix cell) through a
``spermlib.dashboard.state.MistakesPreset``, applied once before the widgets are created. Which fold
model explains an image, and whether it is installed, is decided in ``spermlib.dashboard.mistakes``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from spermlib.dashboard import mistakes as vm
from spermlib.dashboard import resources
from spermlib.dashboard.compare import preferred_order
from spermlib.dashboard.resources import DatasetSpec, ImageError, load_rgb
from spermlib.dashboard.tables import (
    MistakeFilter,
    arch_title,
    export_table,
    filter_predictions,
    mark_present,
    missing_results_message,
    to_csv_bytes,
)
from spermlib.dashboard.text import md_escape
from views.annotations import dataset_tags_section
from views.common import Tile, cached_oofs, data_root_or_error, dataset_picker, gallery, get_predictor, page_picker

PAGE_SIZE = 24


def explain_image(predictor, dataset: str, arch: str, checkpoints: str, image_path: str, fold: int,
                  class_idx: int, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Grad-CAM++ overlay (and CBAM overlay) of the fold-``fold`` model for one image file (``name``: its path
    relative to the data root, what a message about it shows), in the process's prediction cache."""
    key = ("mistakes", dataset, arch, checkpoints, image_path, fold, class_idx)
    return resources.prediction_cache().get_or_compute(
        key, lambda: vm.explained_overlays(predictor, image_path, fold, class_idx, name=name))


def filters(spec: DatasetSpec, entries: list[str]) -> tuple[str, MistakeFilter]:
    """The filter widgets: the model whose predictions are listed, and what to show of them."""
    ds = spec.name
    if st.session_state.get(vm.arch_key(ds)) not in entries:
        st.session_state.pop(vm.arch_key(ds), None)
    c1, c2, c3 = st.columns(3)
    arch = c1.selectbox("Model", preferred_order(entries), format_func=arch_title, key=vm.arch_key(ds),
                        help="The paper's model first, as Classify runs it by default: (TTA) is a model scored with "
                             "test-time augmentation, the entry without it the same model on one view.")
    true_classes = c2.multiselect("True class (empty = any)", list(spec.class_dirs), format_func=spec.display,
                                  key=vm.true_key(ds))
    pred_classes = c3.multiselect("Predicted class (empty = any)", list(spec.class_dirs), format_func=spec.display,
                                  key=vm.pred_key(ds))
    c1, c2, c3 = st.columns([2, 1, 1])
    confidence = c1.slider("Confidence of the prediction", 0.0, 1.0, (0.0, 1.0), step=0.01, key=vm.CONFIDENCE_KEY)
    errors_only = c2.checkbox("Errors only", value=True, key=vm.ERRORS_ONLY_KEY)
    plain = vm.plain_entries(entries)
    disagree_only = c3.checkbox("Models disagree", value=False, key=vm.DISAGREE_KEY, disabled=len(plain) < 2,
                                help=f"Images on which the out-of-fold predictions of "
                                     f"{', '.join(map(arch_title, plain))} are not all the same.")
    return arch, MistakeFilter(true_classes, pred_classes, tuple(confidence), errors_only, disagree_only)


def present_images(filtered: pd.DataFrame, spec: DatasetSpec, root: Path) -> pd.DataFrame:
    """The listed images whose files are under ``root`` (after a notice about the others)."""
    present = mark_present(filtered, root)
    shown = present[present["file_present"]].reset_index(drop=True)
    missing = len(present) - len(shown)
    if missing:
        st.info(vm.missing_images_notice(missing, len(present), spec, root))
    return shown


def mistakes_gallery(shown: pd.DataFrame, root: Path) -> None:
    st.subheader("Gallery")
    n_pages = (len(shown) - 1) // PAGE_SIZE + 1
    page = page_picker(n_pages, vm.PAGE_KEY, label=f"Page (of {n_pages})") if n_pages > 1 else 1
    chunk = shown.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    gallery(root, [Tile(r.path, f"{r.true_display} → {r.pred_display} · {r.confidence:.0%} · fold {r.fold}")
                   for r in chunk.itertuples(index=False)])


def fold_explanation(item: vm.FoldExplanation, spec: DatasetSpec, image_file: Path, name: str,
                     explain_true: bool) -> None:
    """One model's column: its Grad-CAM++ (and CBAM) from the fold model that never saw the image."""
    checkpoints = resources.default_checkpoints_dir()
    st.markdown(f"**{arch_title(item.entry)}**")
    notice = item.notice(spec.name, checkpoints, arch_title(item.entry))
    if notice:
        st.info(notice)
        return
    predictor = get_predictor(spec.name, item.arch)  # None after a notice if it cannot be loaded
    if predictor is None:
        return
    target = item.target(explain_true)
    cam, att = explain_image(predictor, spec.name, item.entry, str(checkpoints), str(image_file), item.fold,
                             predictor.classes.index(target), name)
    verdict = "Right:" if item.correct else "Wrong:"
    st.image(cam, width="stretch",
             caption=f"{verdict} predicted {spec.display(item.pred)} ({item.confidence:.0%}); map for "
                     f"{spec.display(target)}; fold-{item.fold} model (never saw this image)")
    if att is not None:
        st.image(att, width="stretch", caption="CBAM spatial attention (0.5 = neutral)")


def explanations(shown: pd.DataFrame, oofs: dict, spec: DatasetSpec, root: Path) -> None:
    st.subheader("Why? Grad-CAM++ of the models that never saw the image")
    image_labels = {r.path: f"{r.path} — true {r.true_display}, predicted {r.pred_display} ({r.confidence:.0%})"
                    for r in shown.itertuples(index=False)}
    choice = st.selectbox("Image", list(image_labels), format_func=image_labels.get, key=vm.image_key(spec.name))
    explain_what = st.radio("Explain the class", ["predicted by that model", "true class"], horizontal=True,
                            key="mistakes_cam_class")
    image_file = Path(root) / choice
    try:
        original = load_rgb(image_file, name=choice)
    except ImageError as err:
        st.error(md_escape(err))
        return
    items = vm.fold_explanations(oofs, choice, spec, resources.default_checkpoints_dir())
    cols = st.columns(1 + len(items))
    true_label = shown.set_index("path").at[choice, "label"]
    cols[0].image(np.asarray(original), caption=f"{choice} (true: {spec.display(true_label)})", width="stretch")
    with st.spinner("Computing Grad-CAM++ …"):
        for col, item in zip(cols[1:], items):
            with col:
                fold_explanation(item, spec, image_file, choice, explain_true=explain_what == "true class")


st.title("Misclassification explorer")
st.markdown("Out-of-fold predictions: every image was classified by the fold model that never saw it in "
            "training or model selection, so these are honest errors.")
vm.apply_preset(st.session_state)
spec = dataset_picker(key=vm.DATASET_KEY)
oofs = cached_oofs(spec.name)
if not oofs:
    st.info(missing_results_message(spec.name))
    st.stop()
root = data_root_or_error(spec)

arch, flt = filters(spec, list(oofs))
table = vm.mistakes_table(oofs, arch, spec)
filtered = filter_predictions(table, flt)
export = export_table(filtered, spec)
n_err = int((~table["correct"]).sum())
st.markdown(f"**{len(filtered)}** images match — of {len(table)} out-of-fold predictions of "
            f"{arch_title(arch)} ({n_err} errors).")
st.dataframe(export, hide_index=True, width="stretch", column_order=vm.SHOWN_COLUMNS,
             column_config={"confidence": st.column_config.ProgressColumn(format="%.2f", min_value=0, max_value=1),
                            "p_true": st.column_config.NumberColumn(format="%.3f")})
st.caption("The CSV adds every class probability and the other models' predictions.")
st.download_button("Download this list as CSV", to_csv_bytes(export), file_name=f"{spec.name}_{arch}_mistakes.csv",
                   mime="text/csv", key="mistakes_download")

if root is None or filtered.empty:
    st.stop()
shown = present_images(filtered, spec, root)
if shown.empty:
    st.stop()
mistakes_gallery(shown, root)
explanations(shown, oofs, spec, root)
dataset_tags_section(spec, st.session_state.get(vm.image_key(spec.name)), key="mistakes_tags")
