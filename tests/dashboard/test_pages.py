"""spermlib.dashboard.pages: the one page registry behind app.py's navigation and the Overview's links."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from spermlib.dashboard.pages import PAGES, linked_pages, page

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_page_exists_and_every_page_script_is_registered():
    files = [p.file for p in PAGES]
    assert len(set(files)) == len(files) and all((ROOT / f).is_file() for f in files)
    scripts = {f"views/{p.name}" for p in (ROOT / "views").glob("*.py")} - {"views/common.py", "views/annotations.py",
                                                                            "views/auth.py"}  # helpers, not pages
    assert scripts == set(files)  # a new page must be added to the registry to be reachable


def test_one_default_page_and_the_overview_links_to_all_others():
    (default,) = [p for p in PAGES if p.default]
    assert default.name == "overview"
    assert [p.name for p in linked_pages()] == ["explorer", "classify", "compare", "mistakes", "embedding", "samples"]
    assert all(p.title and p.icon.startswith(":material/") and p.description for p in PAGES)


def test_page_by_url_path():
    assert page("mistakes").file == "views/mistakes.py"
    with pytest.raises(KeyError, match="no dashboard page 'nope'"):
        page("nope")


def test_app_and_overview_take_their_pages_from_the_registry():
    """No page file name is spelled out in app.py or the Overview (a second list would drift)."""
    for script in ("app.py", "views/overview.py"):
        strings = [n.value for n in ast.walk(ast.parse((ROOT / script).read_text()))
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not [s for s in strings if s.startswith("views/")], script
