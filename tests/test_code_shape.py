"""Shape rules the code review asked for: small functions, pages that only lay out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80


def _python_files() -> list[Path]:
    return [*sorted((ROOT / "spermlib").rglob("*.py")), *sorted((ROOT / "views").glob("*.py")), ROOT / "app.py"]


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_function_is_longer_than_80_lines():
    assert [f for p in _python_files() for f in _long_functions(p)] == []


def test_the_checker_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def too_long():\n{body}\n")
    assert _long_functions(tmp_path / "long.py") == ["long.py:1 too_long (81 lines)"]


def test_pages_do_not_import_torch():
    for path in [*sorted((ROOT / "views").glob("*.py")), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{path.name} imports torch"
