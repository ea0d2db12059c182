"""Overview: what the system does, which data and checkpoints this installation found, the
headline leaderboard (ours beside the paper's, protocols named) and links to every page."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from spermlib.dashboard.status import installation_status
from spermlib.dashboard.tables import (
    PAPER_PROTOCOL,
    PAPER_TITLE,
    leaderboard,
    leaderboard_display,
    missing_results_message,
)
from spermlib.data.datasets import DATA_DIR_ENV, DATASETS
from spermlib.store.paths import default_checkpoints_dir, default_results_dir
from spermlib.store.results import ResultsError
from views.common import results_stamp

st.title("Interpretable sperm-morphology classification")
st.markdown(
    "EfficientNet with a CBAM attention module classifies sperm images; Grad-CAM++ shows which "
    "regions drove each decision. Models are evaluated with leakage-free, stratified 5-fold "
    "cross-validation (pixel-identical duplicates always share a fold)."
)
st.markdown(
    "**In plain words:** you give the system a microscope image of a single sperm cell (SMIDS) or sperm "
    "head (HuSHeM); it answers which morphology class the cell belongs to, how sure it is, and shows a heat "
    "map of the part of the image that drove the answer. Three models are compared: a small CNN trained "
    "from scratch, an ImageNet-pretrained EfficientNet, and the same EfficientNet with CBAM attention "
    "(the paper's model). It is a research tool, not a diagnostic device."
)


@st.cache_data(ttl=60)
def _status(checkpoints: str, data_dir: str) -> list[dict]:
    """Keyed by the folders it reads, so pointing the app elsewhere refreshes it at once."""
    return installation_status(checkpoints_dir=Path(checkpoints))


@st.cache_data(show_spinner=False)
def _leaderboard(results: str, dataset: str, stamp: tuple) -> pd.DataFrame:
    return leaderboard(results, datasets=[dataset])


rows = _status(str(default_checkpoints_dir()), os.environ.get(DATA_DIR_ENV, ""))
st.subheader("Data and models found")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
if not any(r["checkpoints"] for r in rows):
    st.info(
        "No trained checkpoints are installed yet. Train them with "
        "`python -m spermlib train --dataset smids --arch effnet_cbam` (see README)."
    )

st.subheader("Leaderboard")
boards = []
for name in DATASETS:  # one unreadable metrics.json must not hide the other dataset's results
    try:
        boards.append(_leaderboard(str(default_results_dir()), name, results_stamp(name)))
    except ResultsError as err:
        st.error(str(err))
boards = [b for b in boards if not b.empty]
board = pd.concat(boards, ignore_index=True) if boards else leaderboard(default_results_dir(), datasets=[])
if board.empty:
    for name in DATASETS:
        st.info(missing_results_message(name))
else:
    st.dataframe(leaderboard_display(board), hide_index=True, width="stretch")
    for name in DATASETS:
        if name not in set(board["dataset"]):
            st.info(missing_results_message(name))
    protocols = sorted(set(board["protocol"]) - {""})
    st.caption(
        "**Our protocol:** " + (" / ".join(protocols) or "out-of-fold 5-fold cross-validation")
        + ". Accuracy and macro-F1 are the mean ± sample standard deviation over the 5 test folds; the 95 % CI "
        "is a percentile bootstrap over all out-of-fold images."
    )
    st.caption(f"**Paper** ({PAPER_TITLE}): {PAPER_PROTOCOL}. Its numbers are shown on the row of its model.")
    if not board["full_dataset"].all():
        subset = sorted({DATASETS[d].folder for d in board.loc[~board["full_dataset"], "dataset"]})
        st.warning(
            f"Results for {', '.join(subset)} come from a subset of the data (e.g. the bundled sample), not "
            "from the published protocol on the full dataset: they are not comparable with the paper."
        )

st.subheader("Pages")
links = [
    ("views/explorer.py", "Dataset explorer", ":material/photo_library:",
     "browse the images, classes, folds and duplicates"),
    ("views/classify.py", "Classify", ":material/biotech:", "upload images; prediction, confidence and Grad-CAM++"),
    ("views/compare.py", "Model comparison", ":material/leaderboard:",
     "every metric, confusion matrices, ROC, calibration"),
    ("views/mistakes.py", "Misclassification explorer", ":material/search:",
     "out-of-fold errors with their explanations"),
    ("views/embedding.py", "Embedding map", ":material/scatter_plot:", "2-D map of the models' features"),
]
for page, label, icon, what in links:
    st.page_link(page, label=f"{label} — {what}", icon=icon)

st.subheader("Datasets")
for r in rows:
    st.markdown(f"**{r['dataset']}** — {r['citation']}")
