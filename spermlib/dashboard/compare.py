"""What the model-comparison page decides about confusion matrices, without Streamlit.

A confusion-matrix cell leads to the misclassification explorer, preset on its images, two ways:
a click on the cell (plotly point selection) or the cell picker below the matrices. Cells are
named ``"<true>|<pred>"`` (class folders) so a choice means the same cell for every model.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np
import pandas as pd

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.dashboard.tables import cell_label
from spermlib.store.results import base_arch, entry_name, is_tta

Cell = tuple[str, str]  # (true class folder, predicted class folder)


def cell_key(true: str, pred: str) -> str:
    return f"{true}|{pred}"


def parse_cell_key(key: str) -> Cell:
    true, pred = key.split("|")
    return true, pred


def cell_options(cells: pd.DataFrame) -> dict[str, str]:
    """Cell key → label for the picker: the errors first, largest first, then the diagonal."""
    records = cells.to_dict("records")
    errors = sorted((c for c in records if c["true"] != c["pred"]), key=lambda c: -c["count"])
    diagonal = [c for c in records if c["true"] == c["pred"]]
    return {cell_key(c["true"], c["pred"]): cell_label(c) for c in errors + diagonal}


def heatmap_grid(cells: pd.DataFrame, normalise: bool) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """Class names, the matrix to colour (counts or row shares) and each cell's text, from
    :func:`~spermlib.dashboard.tables.confusion_cells` (row-major, true × predicted)."""
    names = list(dict.fromkeys(cells["true_display"]))
    n = len(names)
    z = cells["row_share" if normalise else "count"].to_numpy().reshape(n, n)
    text = [f"{c['count']}<br>{100 * c['row_share']:.0f} %" for c in cells.to_dict("records")]
    return names, z, [text[i * n:(i + 1) * n] for i in range(n)]


def clicked_cell(points: Sequence[Mapping]) -> Cell | None:
    """The cell of a plotly selection of the cell markers (their customdata is ``[true, pred, count]``)."""
    if not points or not points[0].get("customdata"):
        return None
    true, pred = (str(v) for v in points[0]["customdata"][:2])
    return true, pred


def cell_to_open(state: MutableMapping, handled_key: str, points: Sequence[Mapping]) -> Cell | None:
    """The cell to open for a *new* click, else ``None``.

    A plotly selection persists in the widget: when the user comes back to the comparison page the
    same selection is reported again and must not send them away again. So the last handled cell is
    remembered under ``handled_key`` and forgotten once the selection is cleared.
    """
    cell = clicked_cell(points)
    if cell is None:
        state.pop(handled_key, None)
        return None
    if state.get(handled_key) == cell:
        return None
    state[handled_key] = cell
    return cell


def chart_entries(entries: Sequence[str], with_tta: bool) -> list[str]:
    """The results entries the comparison charts show, in grid order: the models, the paper's model
    (``DEFAULT_ARCH``) first and the simplest last; with ``with_tta``, then the same models scored with
    test-time augmentation, in the same order (a second grid row, each model under its plain self)."""
    def order(names: list[str]) -> list[str]:
        return sorted(names, key=lambda e: (base_arch(e) != DEFAULT_ARCH, -arch_rank(base_arch(e)), e))

    plain = order([e for e in entries if not is_tta(e)])
    return plain + (order([e for e in entries if is_tta(e)]) if with_tta else [])


def preferred_order(entries: Sequence[str]) -> list[str]:
    """``entries`` in picker order, the default first: the paper's model (``DEFAULT_ARCH``), then the other
    models from the strongest by design to the simplest (the reverse of ``ARCHS``); each model's default
    inference (its TTA entry, as Classify and ``predict`` run it) before its one-view entry. A picker
    preselects the first entry, so a page never opens on the weakest model while a stronger one is there."""
    return sorted(entries, key=lambda e: (base_arch(e) != DEFAULT_ARCH, -arch_rank(base_arch(e)), not is_tta(e), e))


def default_entry(entries: Sequence[str]) -> str | None:
    """The entry a page leads with (the first of :func:`preferred_order`); ``None`` when there is none."""
    return next(iter(preferred_order(entries)), None)


def has_tta(entries: Sequence[str]) -> bool:
    """Whether any entry is a model scored with test-time augmentation."""
    return any(is_tta(e) for e in entries)


def default_inference(arch: str, entries: Sequence[str]) -> str:
    """The entry of ``arch`` as the app runs it by default: with TTA where that was scored, else one view."""
    tta = entry_name(arch, tta=True)
    return tta if tta in entries else arch


def arch_rank(arch: str) -> int:
    """Position of ``arch`` in ``ARCHS`` (simplest first); unknown archs after the known ones."""
    return ARCHS.index(arch) if arch in ARCHS else len(ARCHS)
