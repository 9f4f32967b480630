"""The layering of docs/ARCHITECTURE.md holds: the core imports only itself (and io), io imports no torch,
every module is on the map, and no module grows past what one reader takes in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_seamless_unet"
MAP = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import in a file: level 0 for absolute imports, 1 for ``from .``, ..."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


def resolve(path: Path, level: int, module: str) -> str:
    """The absolute dotted name an import refers to."""
    if level == 0:
        return module
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    base = parts[: len(parts) - level]
    return ".".join(base + ([module] if module else []))


@pytest.mark.parametrize("path", [p for p in MODULES if "core" in p.relative_to(PACKAGE).parts], ids=str)
def test_the_core_imports_nothing_from_outside_core_and_io(path):
    for level, module in imports(path):
        name = resolve(path, level, module)
        if name.startswith("napari_seamless_unet"):
            assert name.startswith(("napari_seamless_unet.core", "napari_seamless_unet.io")), (path, name)
        assert not name.startswith(("napari", "qtpy", "PyQt", "PySide", "magicgui", "superqt")) or name.startswith(
            "napari_seamless_unet"
        ), (path, name)


@pytest.mark.parametrize("path", [p for p in MODULES if "io" in p.relative_to(PACKAGE).parts], ids=str)
def test_io_imports_no_torch(path):
    for level, module in imports(path):
        assert not resolve(path, level, module).startswith("torch"), path


@pytest.mark.parametrize("path", MODULES, ids=str)
def test_every_module_is_short_and_on_the_map(path):
    assert len(path.read_text().splitlines()) <= 420, f"{path} is too long: split it by responsibility"
    relative = path.relative_to(PACKAGE)
    if relative.name in ("__init__.py", "__main__.py", "_version.py"):
        return
    text = MAP.read_text()
    # named as `package/module.py`, or as a bare module name in its package's row
    assert str(relative) in text or f"`{relative.stem}`" in text or f"{relative.stem}.py" in text, (
        f"{relative} is not in docs/ARCHITECTURE.md"
    )
