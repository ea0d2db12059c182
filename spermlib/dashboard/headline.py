"""What the Overview leads with, decided without Streamlit: the key figures (the worked example is
:mod:`spermlib.evaluation.worked_example`).

The key figures are the paper's model's cross-validated accuracy per dataset (beside the paper's
published number), how many images were scored out of fold, and how many models are compared. The
worked example is a bundled sample that the paper's model classified correctly *out of fold* (by the
fold model that never saw it), preferring the normal class: the Overview shows its prediction from
the OOF table and the maps of that same fold model.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from spermlib.archs import DEFAULT_ARCH
from spermlib.dashboard.tables import PAPER_RESULTS, arch_title, pct
from spermlib.data.datasets import DATASETS
from spermlib.store.results import entry_name, is_tta


@dataclass(frozen=True)
class KeyFigure:
    """One st.metric: ``delta`` compares it with the paper's number."""

    label: str
    value: str
    delta: str | None = None
    help: str | None = None


def plain_board(board: pd.DataFrame) -> pd.DataFrame:
    """Leaderboard rows of the models themselves (scores with test-time augmentation left out)."""
    return board[~board["arch"].map(is_tta)].reset_index(drop=True)


def key_figures(board: pd.DataFrame) -> list[KeyFigure]:
    """Per evaluated built-in dataset, the accuracy of the paper's model as the app and ``predict`` run it by
    default (delta: to the paper), then the images scored out of fold and the number of models compared.
    ``board`` is the whole leaderboard, test-time augmentation entries included: the default is the TTA entry
    (Classify and ``predict`` turn it on unless told not to), else the one-view one. Own datasets are left to the
    leaderboard and the chart: these cards are the replication's headline, and a fifth card would break their rows."""
    rows = {(r.dataset, r.arch): r for r in board.itertuples()}
    figures, images_scored = [], 0
    for dataset in DATASETS:
        one_view = rows.get((dataset, DEFAULT_ARCH))
        r = rows.get((dataset, entry_name(DEFAULT_ARCH, tta=True)), one_view)
        if r is None:
            continue
        images_scored += int(r.n_images)
        paper = PAPER_RESULTS.get(dataset, {}).get("accuracy")
        how = ""
        if is_tta(r.arch):
            how = (" With test-time augmentation (each image classified by the mean over its 8 flips and turns), as "
                   "Classify and `predict` run it by default"
                   + (f"; one view: {pct(one_view.accuracy_mean)}." if one_view is not None else "."))
        figures.append(KeyFigure(
            f"{DATASETS[dataset].folder} accuracy", pct(r.accuracy_mean),
            f"{100 * (r.accuracy_mean - paper):+.1f} pts vs paper".replace("-", "−") if paper else None,
            f"{arch_title(DEFAULT_ARCH)}: mean over the 5 test folds of a cross-validation ({r.n_images} images)."
            + how + (f" The paper reports {pct(paper)} from one hold-out split." if paper else "")))
    if figures:
        figures.append(KeyFigure(
            "Images scored", f"{images_scored:,}",
            help="Every image was classified once, by the fold model that never saw it in training."))
    models = plain_board(board)["arch"].unique()
    if len(models):
        figures.append(KeyFigure("Models compared", str(len(models)), help=", ".join(map(arch_title, models))))
    return figures
