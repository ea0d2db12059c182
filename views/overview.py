"""Overview, for a stakeholder's first minute: what the system does, how well (key figures and the
headline chart: accuracy with its 95 % CI per model and dataset, the paper's number marked), one worked
example (a bundled sample, its out-of-fold prediction, Grad-CAM++ and CBAM maps), what it can and cannot
do; then the leaderboard, the pages and what this installation found.

Everything is read from results files without torch, the worked example too: `spermlib example`
stores its maps (results/<dataset>/worked_example*). Only when that is missing or made by another checkpoint
(a retrain) are the maps computed here, last (into a placeholder on the first screen, so the rest of the
page is already shown), and cached per process.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from spermlib.archs import DEFAULT_ARCH
from spermlib.dashboard import charts, resources, triage
from spermlib.dashboard import worked_example as vm
from spermlib.dashboard.headline import TTA_VIEWS, chart_heading, default_board, key_figures, leads_with_tta
from spermlib.dashboard.images import fit, side_by_side
from spermlib.dashboard.pages import linked_pages, page
from spermlib.dashboard.resources import DATA_DIR_ENV, DATASETS, ResultsError, get_dataset, listed_datasets
from spermlib.dashboard.status import installation_status
from spermlib.dashboard.tables import (
    PAPER_PROTOCOL,
    PAPER_TITLE,
    arch_title,
    leaderboard,
    leaderboard_display,
    missing_results_message,
)
from spermlib.dashboard.text import md_escape
from views.common import bundled_samples, cached_oofs

EXAMPLE_SIDE = 200  # px of each image of the worked example


@st.cache_data(ttl=60)
def _status(checkpoints: str, data_dir: str) -> list[dict]:
    """Keyed by the folders it reads, so pointing the app elsewhere refreshes it at once."""
    return installation_status(checkpoints_dir=Path(checkpoints))


@st.cache_data(show_spinner=False)
def _leaderboard(results: str, dataset: str, stamp: tuple) -> pd.DataFrame:
    return leaderboard(results, datasets=[dataset])


def load_board() -> pd.DataFrame:
    """Every listed dataset's leaderboard rows (the built-in ones, then own datasets with checkpoints); one
    unreadable metrics.json must not hide another dataset's."""
    boards = []
    for name in listed_datasets():
        try:
            boards.append(_leaderboard(str(resources.default_results_dir()), name, resources.results_stamp(name)))
        except ResultsError as err:
            st.error(md_escape(err))
    boards = [b for b in boards if not b.empty]
    return pd.concat(boards, ignore_index=True) if boards else leaderboard(resources.default_results_dir(), datasets=[])


@st.cache_data(show_spinner=False, max_entries=8)
def _live_example_maps(example: vm.Example, checkpoints: str, mtime_ns: int) -> list[np.ndarray]:
    """Only when no current stored example exists (e.g. after a retrain): the maps, computed with torch."""
    return vm.live_maps(example, checkpoints)


@st.cache_data(show_spinner=False)
def _stored_example(dataset: str, results: str, checkpoints: str, stamp: tuple) -> vm.StoredExample | None:
    return vm.current_stored_example(dataset, results, checkpoints)


def find_stored_example() -> vm.StoredExample | None:
    for name in DATASETS:
        try:
            stored = _stored_example(name, str(resources.default_results_dir()),
                                     str(resources.default_checkpoints_dir()), resources.results_stamp(name))
        except ResultsError as err:
            st.caption(md_escape(err))
            continue
        if stored is not None:
            return stored
    return None


def find_live_example() -> vm.Example | None:
    """The worked example picked from the OOF tables, from the first dataset that has a correct bundled sample."""
    for name in DATASETS:
        example = vm.live_example(name, cached_oofs(name), bundled_samples(name))
        if example is not None:
            return example
    return None


def example_panels(example: vm.Example) -> tuple[list[np.ndarray], list[str]] | None:
    """The maps of a live example (computed here), or ``None`` when its fold model is not installed."""
    checkpoints = resources.default_checkpoints_dir()
    stamp = vm.live_maps_stamp(example, checkpoints)  # retrained: new maps
    if stamp is None:
        return None
    with st.spinner("Computing the explanation …"):
        maps = _live_example_maps(example, str(checkpoints), stamp)
    return maps, vm.panel_captions(example, len(maps))


def worked_example(example: vm.Example, panels: tuple[list[np.ndarray], list[str]] | None) -> None:
    st.markdown(f"**A worked example** ({get_dataset(example.dataset).folder} bundled sample)")
    if panels is None:
        st.image(fit(vm.sample_image(example), EXAMPLE_SIDE), caption=example.path)
        st.markdown(vm.verdict(example))
        return
    maps, captions = panels
    st.image(side_by_side(maps, EXAMPLE_SIDE), caption="Left to right: " + " · ".join(captions), width="stretch")
    st.markdown(vm.verdict(example) + " Red regions drove the answer; the attention map shows where the model looked.")
    st.page_link(page("classify").file, label="Classify your own images", icon=page("classify").icon)


def show_example() -> None:
    """The stored example (no torch), else one computed live, else a note."""
    stored = find_stored_example()
    if stored is not None:
        worked_example(stored.example, (stored.images(), [caption for _, caption in stored.panels]))
        return
    example = find_live_example()
    if example is None:
        st.caption("No bundled sample was classified correctly out of fold: no worked example to show.")
    else:
        worked_example(example, example_panels(example))


def can_and_cannot() -> None:
    st.subheader("What it can and cannot do")
    st.markdown(
        "- **It was trained on two kinds of image only:** SMIDS — stained patches of single sperm cells "
        "(normal, abnormal, or no sperm at all) — and HuSHeM — stained, aligned 131 × 131 px crops of sperm heads "
        "(normal, tapered, pyriform, amorphous). Other stains, magnifications, unstained or whole-field images "
        "are outside its experience: it will still answer, and may be confidently wrong. An out-of-domain check "
        "on the model's own features flags images unlike its training images (most photographs and images of "
        "the other dataset; not every grayscale or unusual image — see the out-of-domain results in the docs).\n"
        "- **It is a research tool, not a diagnostic device.** A semen analysis assesses at least 200 "
        "spermatozoa by trained staff (WHO 2021); a few images classified here are a screening aid at most.\n"
        "- **Each answer comes with its evidence:** the probability of every class, how many of the 5 fold "
        "models agree, and the heat map of the image region that drove the answer.\n"
        f"- **Warnings mean: check the image yourself.** Confidence below {triage.LOW_CONFIDENCE:.0%}; fewer "
        f"than {triage.MIN_AGREEMENT:.0%} of the fold models agreeing; a SMIDS patch that may hold no sperm "
        f"(P(Non-sperm) ≥ {triage.NON_SPERM_PROB:.0%}); a HuSHeM image that is not a head crop."
    )


def results_tables(board: pd.DataFrame) -> None:
    st.subheader("Leaderboard")
    shown = leaderboard_display(board)
    for folder, rows in shown.groupby("Dataset", sort=False):  # static tables wrap their cells on a phone
        st.markdown(f"**{folder}**")
        st.table(rows.drop(columns="Dataset").set_index("Model"))
    protocols = sorted(set(board["protocol"]) - {""})
    st.caption(
        "**Our protocol:** " + (" / ".join(protocols) or "out-of-fold 5-fold cross-validation")
        + ". Accuracy and macro-F1 are the mean ± sample standard deviation over the 5 test folds; the 95 % CI "
        "is a percentile bootstrap over all out-of-fold images. "
        + (f"Each model leads with its default inference, {TTA_VIEWS} (the mean over the 8 flips and 90° turns "
           "of each image, as Classify and `predict` run it) where it was scored; the one-view accuracy (each "
           "image as it is) is beside it. " if leads_with_tta(board) else "")
        + "Both are rows of their own on the Model comparison page."
    )
    st.caption(f"**Paper** ({PAPER_TITLE}): {PAPER_PROTOCOL}. Its numbers are shown on the row of its model.")
    if not board["full_dataset"].all():
        subset = sorted({get_dataset(d).folder for d in board.loc[~board["full_dataset"], "dataset"]})
        st.warning(
            f"Results for {', '.join(subset)} come from a subset of the data (e.g. the bundled sample), not "
            "from the published protocol on the full dataset: they are not comparable with the paper."
        )


def installation(rows: list[dict]) -> None:
    with st.expander("This installation: data folders and checkpoints found"):
        st.dataframe(pd.DataFrame(rows)[["dataset", "data", "checkpoints"]], hide_index=True, width="stretch")


# ====================================================================== page
st.title("Interpretable sperm-morphology classification")
st.markdown(
    "Give it a microscope image of one sperm cell (SMIDS) or sperm head (HuSHeM): it names the morphology "
    "class, says how sure it is, and shows **which part of the image drove the answer** (Grad-CAM++). "
    f"The paper's model, {arch_title(DEFAULT_ARCH)} attention, is compared with a plain EfficientNet and a small "
    "CNN, each evaluated by leakage-free 5-fold cross-validation."
)
rows = _status(str(resources.default_checkpoints_dir()), os.environ.get(DATA_DIR_ENV, ""))
full_board = load_board()
board = default_board(full_board)  # one row per model: its default inference, the one view beside it
example_slot = None
if board.empty:
    for name in DATASETS:
        st.info(missing_results_message(name))
else:
    with st.container(horizontal=True):  # one row on a desktop; on a phone the accuracy cards one a row, then a pair
        for figure in key_figures(full_board):
            st.metric(figure.label, figure.value, figure.delta, delta_color="off", delta_arrow="off",
                      help=figure.help, border=True, width=figure.width)
    left, right = st.columns(2, gap="large")
    left.markdown(chart_heading(board))
    left.plotly_chart(charts.headline_figure(board), width="stretch", key="overview_headline")
    example_slot = right.container()
    for name in DATASETS:
        if name not in set(board["dataset"]):
            st.info(missing_results_message(name))
if not any(r["checkpoints"] for r in rows):
    st.info(
        "No trained checkpoints are installed yet. Train them with "
        "`spermlib train --dataset smids --arch effnet_cbam` (see docs/models.md)."
    )
can_and_cannot()
if not board.empty:
    results_tables(board)
st.subheader("Pages")
for p in linked_pages():  # the description beside the link (below it on a phone): a link label does not wrap
    link, description = st.columns([1, 2], vertical_alignment="center")
    link.page_link(p.file, label=p.title, icon=p.icon)
    description.caption(p.description)
installation(rows)

if example_slot is not None:  # last: the only part that may load a model (when no stored example is current)
    with example_slot:
        show_example()
