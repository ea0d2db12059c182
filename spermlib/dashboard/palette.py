"""The dashboard's colours, in one place: one colour per model and one per class, the same on every page.

* **Models** are keyed by arch. The paper's model (EfficientNet + CBAM) gets the strongest colour; a
  ``+tta`` results entry is the same model scored with test-time augmentation, so it keeps its model's
  hue, lightened.
* **Classes** are keyed by dataset and class folder, chosen from the Okabe–Ito colour-blind-safe
  palette: the normal class is green in both tasks; the abnormal classes are warm; SMIDS's
  Non-sperm (debris, no cell) is a neutral brown.
* Plotly charts get them through ``color_discrete_map`` (keyed by what the chart's colour column
  holds: model titles or class display names), so the order in which traces appear cannot change a
  colour.
"""

from __future__ import annotations

from collections.abc import Iterable

from spermlib.dashboard.tables import arch_title
from spermlib.data.datasets import DatasetSpec
from spermlib.store.results import base_arch, is_tta

MODEL_COLOURS: dict[str, str] = {
    "effnet_cbam": "#1F5FAD",  # the paper's model: deep blue
    "effnet": "#5FA8D3",  # the same backbone without CBAM: light blue
    "simplecnn": "#8C8C8C",  # the small from-scratch baseline: grey
}
CLASS_COLOURS: dict[str, dict[str, str]] = {
    "smids": {"Normal_Sperm": "#009E73", "Abnormal_Sperm": "#D55E00", "Non-Sperm": "#9C7A54"},
    "hushem": {"01_Normal": "#009E73", "02_Tapered": "#E69F00", "03_Pyriform": "#CC79A7", "04_Amorphous": "#D55E00"},
}
# For an arch or class this module does not know (a new arch or dataset): distinct, still colour-blind safe.
FALLBACK = ("#0072B2", "#E69F00", "#56B4E9", "#CC79A7", "#F0E442", "#009E73", "#D55E00", "#000000")

HEATMAP_SCALE = "Blues"  # confusion matrices: one sequential scale, darker = more images
DROP_SCALE = "Reds"  # robustness: darker = more accuracy lost under a corruption
PAPER_COLOUR = "#222222"  # the paper's published number
REFERENCE_COLOUR = "#9E9E9E"  # chance / perfect-calibration diagonals
LIMIT_COLOUR = "#B2182B"  # a clinical reference limit (WHO 2021 normal forms)
MUTED = 0.35  # opacity of the classes a chart does not single out
TTA_LIGHTEN = 0.45  # how far a TTA entry's colour moves toward white


def lighten(colour: str, amount: float) -> str:
    """``#rrggbb`` moved ``amount`` (0–1) of the way to white."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02X}" for c in rgb)


def model_colour(entry: str) -> str:
    """The colour of a results entry (``effnet_cbam``, ``effnet_cbam+tta``) or arch."""
    colour = MODEL_COLOURS.get(base_arch(entry), FALLBACK[0])
    return lighten(colour, TTA_LIGHTEN) if is_tta(entry) else colour


def model_colour_map(entries: Iterable[str]) -> dict[str, str]:
    """Model title (as charts label models, :func:`~spermlib.vocabulary.arch_title`) → colour."""
    return {arch_title(e): model_colour(e) for e in entries}


def class_colour(spec: DatasetSpec, cls: str) -> str:
    """The colour of class folder ``cls`` of ``spec``."""
    known = CLASS_COLOURS.get(spec.name, {})
    if cls in known:
        return known[cls]
    return FALLBACK[list(spec.class_dirs).index(cls) % len(FALLBACK)]


def class_colours(spec: DatasetSpec) -> dict[str, str]:
    """Class folder → colour, in the dataset's class order."""
    return {c: class_colour(spec, c) for c in spec.class_dirs}


def class_colour_map(spec: DatasetSpec) -> dict[str, str]:
    """Class display name (as charts label classes) → colour."""
    return {spec.display(c): class_colour(spec, c) for c in spec.class_dirs}
