"""The direction of the imports: ``botrunner → syncq → discoveries``, the API and the admin on
top, and ``discoveries.haven`` on its own, read from the source of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

APPS = ("discoveries", "syncq", "botrunner", "keeper_site")
#: Modules that sit on top of the layers: the admin, the API, the console and the URLs.
#: The doors and what serves only them: the admin, the API (its middleware included), the
#: dashboard and the URLs.
TOP = (
    "discoveries.admin",
    "syncq.admin",
    "syncq.agent_api",
    "syncq.api",
    "syncq.dashboard",
    "syncq.metrics",
    "syncq.middleware",
    "syncq.urls",
)
#: What ``discoveries.haven`` may import of the project besides itself: it runs alone on the
#: Control Room's desktop. ``discoveries.timestamps`` and ``discoveries.names`` are pure (no
#: database), like ``discoveries.rules``.
HAVEN_MAY_IMPORT = (
    "discoveries.haven",
    "discoveries.types",
    "discoveries.rules",
    "discoveries.timestamps",
    "discoveries.names",
)


def _module_name(path: Path) -> tuple[str, bool]:
    """The dotted name of the module at ``path``, and whether it is a package's ``__init__``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[-1] == "__init__"
    if package:
        parts.pop()
    return ".".join(parts), package


#: Calls that import a module named by a string: ``import_module("x")``, ``__import__("x")``,
#: ``import_string("x.y")``, and ``apps.get_model("app", …)`` or ``("app.Model")``.
DYNAMIC_IMPORTS = {"import_module", "__import__", "import_string", "get_model"}


def _dynamic_import(node: ast.Call) -> str | None:
    """The module (or app) a call of :data:`DYNAMIC_IMPORTS` names by a literal, or None."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in DYNAMIC_IMPORTS or not node.args:
        return None
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    return first.value.split(".")[0] if name == "get_model" else first.value


def _imports(module: str, source: str, *, package: bool = False) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every project import in ``source``
    (of ``module``, a package's ``__init__`` when ``package``); ``from package import name``
    counts as ``package.name`` as well as ``package``, and a module named by a string to
    :data:`DYNAMIC_IMPORTS` counts too."""
    tree = ast.parse(source)
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name != "ready":
            nested |= {id(sub) for sub in ast.walk(node) if sub is not node}
    found = []
    home = module.split(".") if package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = ".".join(home[: len(home) - node.level + 1])
                base = f"{parent}.{node.module}" if node.module else parent
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Call) and (named := _dynamic_import(node)):
            names = [named]
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
            return (
                "discoveries.haven imports only itself, discoveries.types, .rules, .timestamps "
                "and .names"
            )
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


def _problems(module: str, source: str, *, package: bool = False) -> list[str]:
    problems = []
    for imported, line, inside_function in _imports(module, source, package=package):
        if inside_function:
            problems.append(f"{module}:{line} imports {imported} inside a function")
        if reason := _violation(module, imported):
            problems.append(f"{module}:{line} imports {imported}: {reason}")
    return problems


def _app_modules():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield *_module_name(path), path


def test_imports_point_one_way_and_none_hides_in_a_function():
    """No module imports a higher layer (botrunner → syncq → discoveries, the admin and API on
    top, discoveries.haven alone), and no project import sits inside a function."""
    problems = []
    checked = 0
    for module, package, path in _app_modules():
        problems += _problems(module, path.read_text(encoding="utf-8"), package=package)
        checked += 1
    assert checked > 50
    assert problems == []


@pytest.mark.parametrize(
    ("module", "source", "expected", "package"),
    [
        ("discoveries.services", "from syncq.services import x\n", "never imports syncq", 0),
        ("syncq.api", "from botrunner.cogs import heartbeat\n", "beside the bot", 0),
        ("syncq.services", "from syncq.api import x\n", "only the top", 0),
        ("discoveries.haven.writer", "from discoveries.models import Discovery\n", "haven", 0),
        ("syncq.tasks", "def f():\n    from syncq.services import x\n", "inside a function", 0),
        ("discoveries.haven", "from .. import models\n", "haven", 1),
        ("discoveries.haven", "from ..models import Discovery\n", "haven", 1),
        ("discoveries.haven.catalog", "import_module('syncq.services')\n", "haven", 0),
        ("discoveries.rules", "importlib.import_module('syncq.services')\n", "syncq", 0),
        ("discoveries.rules", "__import__('botrunner.bot')\n", "bot", 0),
        ("discoveries.rules", "import_string('syncq.services.x')\n", "syncq", 0),
        ("discoveries.haven.ledger", "apps.get_model('syncq', 'SyncQueueItem')\n", "haven", 0),
        ("discoveries.haven.ledger", "apps.get_model('discoveries.Discovery')\n", "haven", 0),
        ("discoveries.haven.catalog", "from . import models\n", None, 0),
        ("discoveries.haven", "from . import models\n", None, 1),
        ("syncq.apps", "class A:\n    def ready(self):\n        import syncq.schedules\n", None, 0),
    ],
)
def test_the_check_finds_each_kind_of_wrong_import(module, source, expected, package):
    """The check above can fail: each kind of wrong import is reported, relative and by name
    included, and allowed ones are not."""
    problems = _problems(module, source, package=bool(package))
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems
