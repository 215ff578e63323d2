"""The house rules of the layout, read from the code's own imports (every arrow points down).

- ``include/`` is the ground floor: outside ``include/ops/`` it imports only ``include``;
- ``streaming/`` (the speed layer) never imports the batch layer or the front doors;
- ``warehouse/`` (the batch layer) never imports the front doors, DAGs or the UI plugin;
- no product code imports ``tests`` or ``bench``, and no import hides behind
  ``__import__`` or ``importlib.import_module``, where neither ruff nor a reader sees it.

Imports inside functions count like any other: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("include", "streaming", "warehouse", "dags", "plugins")
NEVER_FROM_PRODUCT = ("tests", "bench")

# (folder the rule applies to, folder it leaves out, packages it must not import)
RULES = (
    ("include", "include/ops", ("streaming", "warehouse", "dags", "plugins", "include.ops")),
    ("streaming", None, ("warehouse", "dags", "plugins", "include.ops")),
    ("warehouse", None, ("dags", "plugins", "include.ops")),
)


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source``, and of every dynamic import by name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            found.append((node.lineno, "<dynamic import>"))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "__import__"
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(relative_path: str, source: str) -> list[str]:
    """Every import of ``source`` (a file at ``relative_path``) that breaks a house rule."""
    folder = relative_path.replace("\\", "/")
    broken = []
    for line, module in imported_modules(source):
        where = f"{relative_path}:{line} imports {module}"
        if module == "<dynamic import>":
            broken.append(f"{relative_path}:{line} imports by name (use a plain import)")
            continue
        if any(_within(module, p) for p in NEVER_FROM_PRODUCT):
            broken.append(where)
            continue
        for applies_to, except_in, forbidden in RULES:
            if not folder.startswith(applies_to + "/"):
                continue
            if except_in and folder.startswith(except_in + "/"):
                continue
            if any(_within(module, p) for p in forbidden):
                broken.append(f"{where} (rule for {applies_to}/)")
    return broken


def product_files() -> list[Path]:
    return sorted(p for top in PRODUCT for p in (REPO_ROOT / top).rglob("*.py"))


@pytest.mark.unit
def test_every_arrow_points_down() -> None:
    broken = [
        v
        for path in product_files()
        for v in violations(str(path.relative_to(REPO_ROOT)), path.read_text())
    ]
    assert not broken, "\n".join(broken)


@pytest.mark.unit
def test_the_product_files_are_found() -> None:
    found = {str(p.relative_to(REPO_ROOT)) for p in product_files()}
    assert {"include/settings.py", "streaming/processor.py", "include/ops/cli.py"} <= found


@pytest.mark.unit
@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("include/topics.py", "from warehouse.db import connect_read_only"),
        ("include/settings.py", "def f():\n    import streaming.rules\n"),
        ("include/regions.py", "from include.ops.cli import app"),
        ("streaming/rules.py", "from warehouse.stats.backtest import backtest"),
        ("warehouse/db.py", "from include.ops import demo"),
        ("warehouse/db.py", "from tests.fixtures.stats import FakeArchive"),
        ("dags/archive_readings.py", "import bench.chaos"),
        ("include/ops/cli.py", "x = __import__('warehouse.stats.cli')"),
        ("include/ops/cli.py", "import importlib\nimportlib.import_module('streaming.cli')"),
    ],
)
def test_each_rule_catches_its_breach(path: str, source: str) -> None:
    assert violations(path, source)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("include/ops/cli.py", "from warehouse.stats.cli import warehouse_app"),
        ("include/ops/demo.py", "from streaming.processor import StreamProcessor"),
        ("warehouse/stats/backtest.py", "from streaming.rules import evaluate"),
        ("streaming/processor.py", "from include.contract import parse_reading"),
        ("dags/regional_stats.py", "from warehouse.stats.recompute import recompute"),
    ],
)
def test_arrows_that_point_down_are_allowed(path: str, source: str) -> None:
    assert violations(path, source) == []
