"""What the Overview leads with, decided without Streamlit: one figure per model, the key figures.

**One figure per model.** Each model is shown as the app runs it by default: with test-time augmentation
(TTA ×8: each image classified by the mean over its 8 flips and 90° turns), as Classify and ``predict`` do,
where that entry was scored; its one-view figure beside it, labelled "one view". A model without a TTA
score leads with its one view. :func:`default_board` applies that rule once, for the key figures, the
headline chart and the leaderboard alike (the Model comparison page lists both entries as rows).

The key figures are the paper's model's cross-validated accuracy per built-in dataset (beside the
paper's published number), how many images were scored out of fold, and how many models are compared.
The worked example is :mod:`spermlib.dashboard.worked_example`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from spermlib.archs import DEFAULT_ARCH
from spermlib.dashboard.compare import preferred_order
from spermlib.dashboard.tables import PAPER_RESULTS, arch_title, pct
from spermlib.data.datasets import DATASETS
from spermlib.store.results import base_arch, entry_name, is_tta

TTA_VIEWS = "TTA ×8"
ONE_VIEW = "one view"
ONE_VIEW_COLUMNS = {"accuracy_mean": "one_view_accuracy_mean", "accuracy_pooled": "one_view_accuracy_pooled",
                    "accuracy_ci_lo": "one_view_accuracy_ci_lo", "accuracy_ci_hi": "one_view_accuracy_ci_hi"}
PAPER_COLUMNS = ["paper_accuracy", "paper_macro_f1"]


@dataclass(frozen=True)
class KeyFigure:
    """One st.metric: ``delta`` compares it with the paper's number and gives the one-view figure; ``width``
    (px) keeps the card wide enough for its delta, so that the cards wrap whole on a phone rather than
    cutting their text."""

    label: str
    value: str
    delta: str | None = None
    help: str | None = None
    width: int = 160


def plain_board(board: pd.DataFrame) -> pd.DataFrame:
    """Leaderboard rows of the models scored one view per image (the TTA entries left out)."""
    return board[~board["arch"].map(is_tta)].reset_index(drop=True)


def default_board(board: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × model, as the app runs it by default (see the module docstring), models in
    :func:`~spermlib.dashboard.compare.preferred_order`. ``board``: the whole
    :func:`~spermlib.dashboard.tables.leaderboard`, TTA entries included.

    Added columns: ``inference`` (``"TTA ×8"`` or ``"one view"``), the one-view accuracy beside a TTA row
    (``one_view_accuracy_mean/pooled/ci_lo/ci_hi``; NaN on a one-view row), and ``model`` saying which
    inference leads. The paper's numbers stay on the row of its model."""
    rows = []
    for dataset in dict.fromkeys(board["dataset"]):
        entries = board[board["dataset"] == dataset].set_index("arch")
        for arch in preferred_order([a for a in entries.index if not is_tta(a)]):
            rows.append(_default_row(entries, arch))
    columns = [*board.columns, "inference", *ONE_VIEW_COLUMNS.values()]
    return pd.DataFrame(rows, columns=columns)


def _default_row(entries: pd.DataFrame, arch: str) -> dict:
    """The row of ``arch``: its TTA entry (with its one-view figures and the paper's numbers) or its one view."""
    one_view = entries.loc[arch]
    tta = entry_name(arch, tta=True)
    if tta not in entries.index:
        return {**one_view.to_dict(), "arch": arch, "inference": ONE_VIEW, **dict.fromkeys(ONE_VIEW_COLUMNS.values())}
    lead = entries.loc[tta]
    return {**lead.to_dict(), "arch": tta, "model": f"{arch_title(arch)} ({TTA_VIEWS})", "inference": TTA_VIEWS,
            **{column: one_view[name] for name, column in ONE_VIEW_COLUMNS.items()},
            **{column: one_view[column] for column in PAPER_COLUMNS}}


def leads_with_tta(board: pd.DataFrame) -> bool:
    """Whether any row of a :func:`default_board` leads with test-time augmentation."""
    return bool((board["inference"] == TTA_VIEWS).any())


def chart_heading(board: pd.DataFrame) -> str:
    """What the headline chart shows, in words (its markers: the default inference, the one view beside it)."""
    if leads_with_tta(board):
        return ("**How often is it right?** Accuracy on images the model never saw, with its 95 % CI: "
                f"{TTA_VIEWS} (the default inference) where scored, ○ {ONE_VIEW}")
    return f"**How often is it right?** Accuracy on images the model never saw ({ONE_VIEW} each), with its 95 % CI"


def key_figures(board: pd.DataFrame) -> list[KeyFigure]:
    """Per evaluated built-in dataset, the accuracy of the paper's model as the app and ``predict`` run it by
    default (delta: to the paper, and the one-view figure), then the images scored out of fold and the number
    of models compared. ``board``: the whole leaderboard, TTA entries included. Own datasets are left to the
    leaderboard and the chart: these cards are the replication's headline, and a fifth card would break their
    rows."""
    lead = default_board(board)
    rows = {(r.dataset, base_arch(r.arch)): r for r in lead.itertuples()}
    figures, images_scored = [], 0
    for dataset in DATASETS:
        r = rows.get((dataset, DEFAULT_ARCH))
        if r is None:
            continue
        images_scored += int(r.n_images)
        figures.append(_accuracy_figure(dataset, r))
    if figures:
        figures.append(KeyFigure(
            "Images scored", f"{images_scored:,}",
            help="Every image was classified once, by the fold model that never saw it in training."))
    models = list(dict.fromkeys(base_arch(a) for a in lead["arch"]))
    if models:
        figures.append(KeyFigure("Models compared", str(len(models)), help=", ".join(map(arch_title, models))))
    return figures


def _accuracy_figure(dataset: str, r) -> KeyFigure:
    paper = PAPER_RESULTS.get(dataset, {}).get("accuracy")
    tta = r.inference == TTA_VIEWS
    vs_paper = f"{100 * (r.accuracy_mean - paper):+.1f} pts vs paper".replace("-", "−") if paper else None
    one_view = f"{ONE_VIEW} {pct(r.one_view_accuracy_mean)}" if tta else None
    how = (f" {TTA_VIEWS}: each image classified by the mean over its 8 flips and turns, as Classify and `predict`"
           f" run it by default; {ONE_VIEW} (each image as it is): {pct(r.one_view_accuracy_mean)}." if tta else "")
    return KeyFigure(
        f"{DATASETS[dataset].folder} accuracy" + (f", {TTA_VIEWS}" if tta else ""), pct(r.accuracy_mean),
        " · ".join(p for p in (vs_paper, one_view) if p) or None,
        f"{arch_title(DEFAULT_ARCH)}: mean over the 5 test folds of a cross-validation ({r.n_images} images)."
        + how + (f" The paper reports {pct(paper)} from one hold-out split." if paper else ""), width=280)
