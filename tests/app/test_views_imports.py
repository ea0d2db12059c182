"""The pages only lay out: ``app.py`` and every file of ``views/`` import from the dashboard layer alone.

Allowed ``spermlib`` imports in the pages (at module level and inside functions alike):

* ``spermlib.dashboard`` and its modules — the view-models, which own what the pages show and load;
* ``spermlib.errors`` — the user-facing error base class the page guard reports;
* ``spermlib.archs`` — the names of the architectures (no torch, no files).

Anything else of ``spermlib`` (``store``, ``data``, ``inference``, ``samples``, ``evaluation``, ``training``,
the package root …) is reached through a view-model in ``spermlib/dashboard/``. The files are parsed, not
imported, so the check costs nothing and sees imports inside functions (the lazy torch ones) too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE_FILES = sorted([ROOT / "app.py", *(ROOT / "views").glob("*.py")])
ALLOWED = ("spermlib.dashboard", "spermlib.errors", "spermlib.archs")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) of every import; ``from a import b`` counts as ``a.b`` (``b`` may be a module)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def is_allowed(module: str) -> bool:
    if module != "spermlib" and not module.startswith("spermlib."):
        return True  # the standard library, Streamlit, plotly, views.* …
    return any(module == a or module.startswith(f"{a}.") for a in ALLOWED)


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pages_import_only_the_dashboard_layer(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    forbidden = [f"{path.name}:{line}: {module}" for line, module in imported_modules(tree) if not is_allowed(module)]
    assert not forbidden, "import through spermlib.dashboard instead:\n" + "\n".join(forbidden)


def test_the_check_sees_imports_inside_functions_and_from_the_package_root():
    tree = ast.parse("def f():\n    from spermlib.store.paths import x\nfrom spermlib import store\n"
                     "import spermlib.dashboard.tables\nfrom spermlib.archs import ARCHS\n")
    assert [is_allowed(m) for _, m in sorted(imported_modules(tree))] == [False, False, True, True]
    assert len(PAGE_FILES) >= 9  # app.py and the views were found
