"""The dashboard's pages, listed once: app.py builds the navigation from this registry and the
Overview its list of links, so a new page cannot appear in one and be missing from the other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from spermlib.samples.access import Actor


@dataclass(frozen=True)
class PageInfo:
    """One page: its script (relative to app.py, as ``st.Page`` and ``st.page_link`` take it) and how it is shown."""

    file: str
    title: str
    icon: str
    description: str
    default: bool = False
    action: str = "view"  # the least action (spermlib.samples.access.ACTIONS) a user needs to see the page

    @property
    def name(self) -> str:
        """The URL path Streamlit gives the page (its file name without ``.py``)."""
        return PurePosixPath(self.file).stem


PAGES: tuple[PageInfo, ...] = (
    PageInfo("views/overview.py", "Overview", ":material/home:",
             "what the system does, the data and models found, the leaderboard", default=True),
    PageInfo("views/explorer.py", "Dataset explorer", ":material/photo_library:",
             "browse the images, classes, folds and duplicates"),
    PageInfo("views/classify.py", "Classify", ":material/biotech:",
             "upload images; prediction, confidence and Grad-CAM++", action="classify"),
    PageInfo("views/compare.py", "Model comparison", ":material/leaderboard:",
             "every metric, confusion matrices, ROC, calibration"),
    PageInfo("views/mistakes.py", "Misclassification explorer", ":material/search:",
             "out-of-fold errors with their explanations"),
    PageInfo("views/embedding.py", "Embedding map", ":material/scatter_plot:", "2-D map of the models' features"),
    PageInfo("views/samples.py", "Samples", ":material/fact_check:",
             "saved samples: expert review queue, history, PDF/HTML report"),
)


def page(name: str) -> PageInfo:
    """The page whose URL path is ``name`` (``"mistakes"``); ``KeyError`` for an unknown one."""
    for p in PAGES:
        if p.name == name:
            return p
    raise KeyError(f"no dashboard page {name!r}; pages: {', '.join(p.name for p in PAGES)}")


def linked_pages() -> list[PageInfo]:
    """The pages the Overview links to: every page but the Overview (the default page) itself."""
    return [p for p in PAGES if not p.default]


def pages_for(actor: Actor | None) -> list[PageInfo]:
    """The pages ``actor`` may open (``None``, a visitor who is not logged in: none). Every role sees every
    page today (a viewer looks and classifies); what a page offers beyond looking, the page asks
    ``actor.can`` and the samples service enforces."""
    return [] if actor is None else [p for p in PAGES if actor.can(p.action)]
