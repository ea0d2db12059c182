"""Embedding map: a 2-D PCA of one fold model's penultimate features for a dataset's images,
coloured by true or predicted class or by domain score; a box/lasso selection shows the selected images.

One fold model embeds every image (see spermlib/embedding.py for why not out-of-fold features);
the marker says whether that model saw the image in training.
"""

from __future__ import annotations

from pathlib import Path

import plotly.express as px
import streamlit as st

from spermlib.dashboard import embedding as vm
from spermlib.dashboard import resources
from spermlib.dashboard.charts import LEGEND_BELOW
from spermlib.dashboard.palette import class_colour_map
from spermlib.dashboard.tables import arch_title
from spermlib.dashboard.text import md_code, md_escape
from views.common import (
    Tile,
    data_root_or_error,
    dataset_picker,
    gallery,
    get_predictor,
)

GALLERY_MAX = 48
DOMAIN = "domain score"


@st.cache_data(show_spinner=False, max_entries=16)
def compute_map(dataset: str, arch: str, fold: int, checkpoints: str, checkpoint_mtime: int, data_root: str,
                embeddings: str, _predictor) -> vm.EmbeddingMap:
    """Cached per dataset × arch × fold model × checkpoint file × data root, in memory and on disk
    (``embeddings``: the folder of ``spermlib embed``, which precomputes the map).

    The progress bar is created in here: Streamlit replays a cached function's elements, and may
    only do so for blocks the function made itself.
    """
    bar = st.progress(0.0, text="Embedding images …")
    emap = vm.embedding_map(_predictor, _predictor.spec, Path(data_root), fold, cache_dir=Path(embeddings),
                         progress=lambda done, total: bar.progress(done / max(total, 1), text=(
                             f"Embedding images with the fold-{fold} model … {done}/{total} (once: the result is "
                             f"cached; `spermlib embed --dataset {dataset}` precomputes it)")))
    bar.empty()
    return emap


st.title("Embedding map")
st.markdown(
    "Each point is an image, placed by the first two principal components (PCA) of the model's penultimate "
    "features (what the classifier head sees). Images the model finds similar lie close together. "
    "**One fold model embeds every image**, so all points share one feature space (the five fold models are "
    "different networks whose feature spaces are not aligned). That model saw 4/5 of the images in training: "
    "circles are images of its held-out test fold, other symbols images it was trained on — expect those to "
    "be better separated."
)
spec = dataset_picker(key="embedding_dataset")
archs = resources.installed_archs(spec.name)  # the paper's model first, the weakest last
if not archs:
    st.info(f"No trained checkpoints for {md_escape(spec.title)}. Train them with "
            f"`spermlib train --dataset {spec.name} --arch all --fold all` (see docs/models.md).")
    st.stop()
root = data_root_or_error(spec)
if root is None:
    st.stop()

c1, c2, c3 = st.columns(3)
arch = c1.selectbox("Model", archs, format_func=arch_title, key=f"embedding_arch_{spec.name}")
predictor = get_predictor(spec.name, arch)
if predictor is None:
    st.stop()
fold = c2.selectbox("Fold model", predictor.folds, format_func=lambda k: f"fold {k}",
                    key=f"embedding_fold_{spec.name}_{arch}")
colour_by = c3.radio("Colour by", ["true class", "predicted class", DOMAIN], horizontal=True, key="embedding_colour",
                     help="Domain score: how typical each image is of this fold model's training images, by its "
                          "out-of-domain detector (`spermlib ood`); below 0 an image would be flagged.")

emap = compute_map(spec.name, arch, fold, str(resources.default_checkpoints_dir()),
                   resources.checkpoint_stamp(spec, arch, fold), str(root), str(resources.default_embeddings_dir()),
                   predictor)

for message in emap.warnings:
    st.warning(md_escape(message))
if emap.note:
    st.info(md_escape(emap.note))
for path, err in emap.errors.items():
    st.error(f"{md_code(path)}: {md_escape(err)} — left out of the map")
frame = emap.frame
if frame.empty:
    st.info(f"No images to embed under {md_code(root)}.")
    st.stop()

if colour_by == DOMAIN and not emap.has_domain_scores:
    st.info(f"No out-of-domain detector is stored for this model; fit one with `spermlib ood --dataset "
            f"{spec.name}`. Coloured by true class instead.")
colour = {"true class": "true", "predicted class": "pred"}.get(colour_by, "domain_score")
colour = "true" if colour == "domain_score" and not emap.has_domain_scores else colour
order = [spec.display(c) for c in spec.class_dirs]
# Domain score: a diverging scale centred on the flagging threshold (0), red = flagged as out of domain.
continuous = {"color_continuous_scale": "RdBu", "color_continuous_midpoint": 0.0} if colour == "domain_score" else {}
fig = px.scatter(
    frame, x="x", y="y", color=colour, symbol="split", custom_data=["path"],
    category_orders={colour: order, "split": [vm.HELD_OUT]}, **continuous,
    color_discrete_map=class_colour_map(spec),  # the same colour per class on every page
    hover_data={"path": True, "true": True, "pred": True, "confidence": ":.2f", "domain_score": ":.2f", "fold": True,
                "x": False, "y": False},
    labels={"x": f"PC1 ({emap.explained[0]:.0%} of variance)", "y": f"PC2 ({emap.explained[1]:.0%} of variance)",
            "true": "true class", "pred": "predicted", "split": "seen by the model?", "domain_score": "domain score"},
)
fig.update_traces(marker={"size": 8, "opacity": 0.8})
fig.update_layout(height=640, dragmode="lasso", legend=LEGEND_BELOW, margin={"l": 10, "r": 10, "t": 10, "b": 10})
event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("box", "lasso"),
                        key=f"embedding_scatter_{spec.name}_{arch}_{fold}")
st.caption(f"{len(frame)} images from {md_code(root)}; model: {arch_title(arch)} fold {fold} "
           f"({md_escape(predictor.backbone)}). Data: {md_escape(spec.citation)}")

paths = vm.selected_paths(event.selection.points if event else [], frame)
if not paths:
    st.caption("Draw a box or lasso around points to see those images here.")
    st.stop()
sel = frame.set_index("path").loc[paths].reset_index()
st.subheader(f"Selected images ({len(sel)})")
st.dataframe(sel.groupby(["true", "pred"]).size().rename("images").reset_index(), hide_index=True)
tiles = [Tile(r.path, vm.tile_caption(r)) for r in sel.head(GALLERY_MAX).itertuples(index=False)]
gallery(root, tiles)
if len(sel) > GALLERY_MAX:
    st.caption(f"Showing the first {GALLERY_MAX} of {len(sel)} selected images.")
