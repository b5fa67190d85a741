"""The direction of the imports: ``botrunner → syncq → discoveries``, the API and the admin on
top, and ``discoveries.haven`` on its own, read from the source of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

APPS = ("discoveries", "syncq", "botrunner", "keeper_site")
#: Modules that sit on top of the layers: the admin, the API, the console and the URLs.
TOP = ("discoveries.admin", "syncq.admin", "syncq.api", "syncq.dashboard", "syncq.urls")
#: What ``discoveries.haven`` may import of the project besides itself: it runs alone on the
#: Control Room's desktop.
HAVEN_MAY_IMPORT = ("discoveries.haven", "discoveries.types", "discoveries.rules")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(module: str, source: str) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every project import in ``source``;
    ``from package import name`` counts as ``package.name`` as well as ``package``."""
    tree = ast.parse(source)
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name != "ready":
            nested |= {id(sub) for sub in ast.walk(node) if sub is not node}
    found = []
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name.split(".")[0] in APPS:
                found.append((name, node.lineno, id(node) in nested))
    return found


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violation(module: str, imported: str) -> str | None:
    """Why ``module`` may not import ``imported``, or None."""
    if _within(module, ("discoveries.haven",)):
        if not _within(imported, HAVEN_MAY_IMPORT):
            return "discoveries.haven imports only itself, discoveries.types and .rules"
        return None
    top = _within(module, TOP) or module.startswith("keeper_site")
    if _within(imported, TOP) and not top and imported != module:
        return "only the top (admin, API, console, URLs) imports the top"
    if _within(imported, ("botrunner",)) and not module.startswith("botrunner"):
        return "nothing below or beside the bot imports it"
    if module.startswith("discoveries") and not top and _within(imported, ("syncq",)):
        return "discoveries never imports syncq"
    if _within(imported, ("keeper_site",)) and not module.startswith("keeper_site"):
        return "nothing imports the site's settings or URLs"
    return None


def _problems(module: str, source: str) -> list[str]:
    problems = []
    for imported, line, inside_function in _imports(module, source):
        if inside_function:
            problems.append(f"{module}:{line} imports {imported} inside a function")
        if reason := _violation(module, imported):
            problems.append(f"{module}:{line} imports {imported}: {reason}")
    return problems


def _app_modules():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield _module_name(path), path


def test_imports_point_one_way_and_none_hides_in_a_function():
    """No module imports a higher layer (botrunner → syncq → discoveries, the admin and API on
    top, discoveries.haven alone), and no project import sits inside a function."""
    problems = []
    checked = 0
    for module, path in _app_modules():
        problems += _problems(module, path.read_text(encoding="utf-8"))
        checked += 1
    assert checked > 50
    assert problems == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("discoveries.services", "from syncq.services import sync_kick\n", "never imports syncq"),
        ("syncq.api", "from botrunner.cogs import heartbeat\n", "beside the bot"),
        ("syncq.services", "from syncq.api import x\n", "only the top"),
        ("discoveries.haven.writer", "from discoveries.models import Discovery\n", "haven"),
        ("syncq.tasks", "def f():\n    from syncq.services import x\n", "inside a function"),
        ("discoveries.haven.catalog", "from . import models\n", None),
        ("syncq.apps", "class A:\n    def ready(self):\n        import syncq.schedules\n", None),
    ],
)
def test_the_check_finds_each_kind_of_wrong_import(module, source, expected):
    """The check above can fail: each kind of wrong import is reported, allowed ones are not."""
    problems = _problems(module, source)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems
