"""The import rules of design.md §1: protocol imports nothing of ours, simulator only protocol.

`settings` and `app` are top-level modules: settings imports nothing of ours; app (the
composition root that builds the services) imports the layers it builds but never the api
or the cli; `farm` joins the stored printers to the fleet (storage and fleet, nothing
above); the api imports app (for `Services`) and every layer below it; the cli may
import anything, so it has no entry.

`web` is the UI the api serves: its pages use the api's request dependencies (`api.deps`), so
only `api/app.py`, which assembles the app, may import web — one sanctioned link back, kept
to those two modules.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "bambufarm"

ALLOWED = {
    "protocol": {"protocol"},
    "simulator": {"protocol", "simulator"},
    "fleet": {"protocol", "fleet"},
    "storage": {"protocol", "storage"},
    "auth": {"storage", "auth"},
    "jobs": {"protocol", "storage", "fleet", "jobs"},
    "settings": set(),
    "farm": {"settings", "storage", "fleet", "protocol", "farm"},
    "app": {"settings", "storage", "auth", "fleet", "farm", "jobs", "filament", "protocol"},
    "api": {"api", "app", "settings", "auth", "storage", "fleet", "farm", "jobs", "filament"}
    | {"protocol"},
    "web": {"web", "api", "app", "settings", "auth", "storage", "fleet", "jobs", "filament"},
}
# Single modules allowed more than their package (see the docstring).
EXTRA = {"api/app.py": {"web"}}


def _modules(package: str) -> list[Path]:
    """The files of a package directory, or the one file of a top-level module."""
    if (SRC / package).is_dir():
        return sorted((SRC / package).rglob("*.py"))
    single = SRC / f"{package}.py"
    return [single] if single.is_file() else []


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "bambufarm" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_allowed_layers(package: str) -> None:
    files = _modules(package)
    assert files, f"no modules found under {package}"
    for path in files:
        allowed = ALLOWED[package] | EXTRA.get(str(path.relative_to(SRC)), set())
        bad = _project_imports(path) - allowed
        assert not bad, f"{path.relative_to(SRC)} imports bambufarm.{sorted(bad)}"


def test_relative_imports_do_not_escape_the_package() -> None:
    for package in ALLOWED:
        for path in _modules(package):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    assert node.level <= 1, (
                        f"{path.relative_to(SRC)}: relative import leaves package"
                    )
