"""Dataset explorer: class balance, image sizes, folds, duplicates, and a paginated gallery.

The catalog (spermlib.dashboard.catalog) is cached per data root and results folder; thumbnails are cached one
by one and only made for the page being shown, so SMIDS's 3000 images cost nothing up front.
"""

from __future__ import annotations

from pathlib import Path

import plotly.express as px
import streamlit as st

from spermlib.dashboard import resources
from spermlib.dashboard.catalog import (
    Catalog,
    build_catalog,
    catalog_sources,
    class_counts,
    conflicting_groups,
    filter_catalog,
    fold_class_table,
    fold_label,
    image_details,
    page_count,
    paginate,
    predictions_display,
)
from spermlib.dashboard.charts import CHART_HEIGHT, LEGEND_BELOW
from spermlib.dashboard.palette import class_colour_map
from spermlib.dashboard.resources import DataError, get_dataset, resolve_data_root
from spermlib.dashboard.text import md_code, md_escape
from views.annotations import dataset_tags_section
from views.common import Tile, dataset_picker, gallery, page_picker, thumbnail

LARGE_SIDE = 320


@st.cache_data(show_spinner="Reading image headers …", max_entries=8)
def _catalog(dataset: str, root: str, results: str, signature: tuple) -> Catalog:
    return build_catalog(get_dataset(dataset), Path(root), results_dir=Path(results))


def _select(path: str) -> None:
    st.session_state["explorer_image"] = path


st.title("Dataset explorer")
spec = dataset_picker("explorer_dataset")

try:
    root = resolve_data_root(spec)
except DataError as err:
    st.error(f"The data folder is not usable: {md_escape(err)}. Fix or unset `$SPERM_DATA_DIR`.")
    st.stop()

results = resources.default_results_dir()
try:  # keyed by the files it reads: a new evaluation invalidates it
    catalog = _catalog(spec.name, str(root), str(results), resources.file_stamps(catalog_sources(spec, results)))
except DataError as err:
    st.error(f"The data folder is not usable: {md_escape(err)}")
    st.stop()
table = catalog.table

source = "full dataset" if catalog.full_dataset else "bundled sample"
st.markdown(f"**{md_escape(spec.title)}** — {source}: **{len(table)} images** in {md_code(catalog.root)}")
if not catalog.full_dataset:
    extra = " plus one duplicate pair with conflicting labels" if len(conflicting_groups(table)) else ""
    st.caption(f"The bundled sample holds 4 images per class per fold{extra}. Point `SPERM_DATA_DIR` at "
               "`../shared/data` to explore the full data.")
st.caption(f"Data: {md_escape(spec.citation)}")
for note in catalog.notes:
    st.warning(md_escape(note))
if not catalog.oof_archs:
    st.info(f"No out-of-fold predictions in {md_code(results / spec.name)} yet: after training, run "
            f"{md_code(f'spermlib evaluate --dataset {spec.name}')} to see each model's prediction per image.")

# ------------------------------------------------------------------ summary charts
st.subheader("Classes and image sizes")
left, right = st.columns(2)
counts = class_counts(table, spec)
palette = class_colour_map(spec)  # the same colour per class on every page
order = {"display": counts["display"].tolist()}
fig = px.bar(counts, x="display", y="images", color="display", text="images", color_discrete_map=palette,
             category_orders=order, labels={"display": "class", "images": "images"}, title="Images per class")
fig.update_layout(showlegend=False, height=CHART_HEIGHT)
left.plotly_chart(fig, width="stretch", key="explorer_counts")
sizes = table[table["width"] > 0]
fig = px.scatter(sizes, x="width", y="height", color="display", hover_name="path", opacity=0.6,
                 color_discrete_map=palette, category_orders=order,
                 marginal_x="histogram", marginal_y="histogram", title="Image size (px)",
                 labels={"display": "class"})
# legend below, not beside: on a phone a side legend takes a third of the width from the scatter
fig.update_layout(height=CHART_HEIGHT, legend=LEGEND_BELOW)
right.plotly_chart(fig, width="stretch", key="explorer_sizes")

left, right = st.columns(2)
left.markdown("**Images per fold** (stratified 5-fold CV grouped by pixel hash)")
left.dataframe(fold_class_table(table, spec), width="stretch")
conflicts = conflicting_groups(table)
n_dup_groups = table.loc[(table["group"] >= 0) & (table["group_size"] > 1), "group"].nunique()
right.markdown(f"**Duplicates**: {n_dup_groups} group(s) of pixel-identical files; "
               f"{conflicts['group'].nunique()} with conflicting labels (excluded, fold = −1).")
if len(conflicts):
    right.dataframe(conflicts.rename(columns={"display": "class"}), hide_index=True, width="stretch")
n_mismatch = int(table["ext_mismatch"].sum())
if n_mismatch:
    right.caption(f"{n_mismatch} file(s) have an extension that does not match their content; "
                  "images are always decoded by content.")

# ------------------------------------------------------------------ gallery
st.subheader("Gallery")
f1, f2, f3, f4 = st.columns([3, 3, 1, 1])
labels = f1.multiselect("Class", list(spec.class_dirs), format_func=spec.display, key="explorer_classes",
                        placeholder="All classes")
fold_options = sorted(table["fold"].unique().tolist(), key=lambda f: (f < 0, f))
folds = f2.multiselect("Fold", fold_options, format_func=fold_label, key="explorer_folds", placeholder="All folds")
per_page = f3.selectbox("Per page", [24, 48, 96], key="explorer_per_page")
shown = filter_catalog(table, labels, folds)
n_pages = page_count(len(shown), per_page)
page = page_picker(n_pages, "explorer_page", where=f4)
st.caption(f"{len(shown)} images match · page {page} of {n_pages}")

if shown.empty:
    st.info("No image matches these filters.")
else:
    tiles = [Tile(r.path, f"{r.display} · {'excl.' if r.fold < 0 else f'f{r.fold}'}")
             for r in paginate(shown, page, per_page).itertuples(index=False)]
    gallery(root, tiles, on_view=_select)

# ------------------------------------------------------------------ one image
st.subheader("Image")
options = shown["path"].tolist() or table["path"].tolist()
if st.session_state.get("explorer_image") not in options:
    st.session_state["explorer_image"] = options[0]
chosen = st.selectbox("Image", options, key="explorer_image")
details = image_details(catalog, chosen, spec)
left, right = st.columns([2, 3])
big = thumbnail(root / chosen, LARGE_SIDE, square=False)
if big is None:
    left.error(f"{md_code(chosen)}: the image could not be decoded")
else:
    left.image(big, caption=chosen)
right.dataframe(details["metadata"], hide_index=True, width="stretch")
if details["conflict"]:
    dup = details["duplicates"]
    others = ", ".join(f"{md_code(p)} (labelled {md_escape(lab)})" for p, lab in zip(dup["path"], dup["display"]))
    right.warning(f"Conflicting labels: this image is pixel-identical to {others}. Its true class is unknown, "
                  "so the pair is excluded from training and evaluation.")
elif len(details["duplicates"]):
    right.markdown("**Pixel-identical copies** (same label, same fold):")
    right.dataframe(details["duplicates"], hide_index=True, width="stretch")
if catalog.oof_archs:
    preds = predictions_display(details["predictions"])
    right.markdown("**Out-of-fold predictions** (each by the fold model that never saw this image)")
    right.dataframe(preds, hide_index=True, width="stretch",
                    column_config={"probability": st.column_config.NumberColumn(format="%.2f")})
    if details["predictions"]["correct"].isna().all():
        right.caption("Excluded images are not evaluated." if catalog.table.loc[
            catalog.table["path"] == chosen, "fold"].iloc[0] < 0 else "This image is not in the evaluated set.")
dataset_tags_section(spec, chosen, key="explorer_tags")
