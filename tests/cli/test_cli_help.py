"""``--help`` imports neither torch nor napari; the names that moved out of the cli module still work, with a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import napari_seamless_unet.cli as cli


def _imported_modules(*argv: str) -> set[str]:
    """Top-level names of every module that ``python -m napari_seamless_unet ARGV`` imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "napari_seamless_unet", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: seamless-unet" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    assert lines, done.stderr
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["segment", "--help"],
        ["postprocess", "--help"],
        ["uncertainty", "--help"],
        ["info", "--help"],
        ["export", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_imports_neither_torch_nor_napari(argv):
    modules = _imported_modules(*argv)
    assert "napari_seamless_unet" in modules
    assert not modules & {"torch", "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6"}


@pytest.mark.parametrize(
    ("name", "new_home"),
    [
        ("list_images", "napari_seamless_unet.io"),
        ("open_image", "napari_seamless_unet.io"),
        ("pair_images_and_labels", "napari_seamless_unet.io"),
        ("create_zarr_output", "napari_seamless_unet.io"),
        ("write_tiff", "napari_seamless_unet.io"),
        ("match_instances", "napari_seamless_unet.core.metrics"),
    ],
)
def test_moved_names_warn_and_point_to_their_new_home(name, new_home):
    with pytest.warns(DeprecationWarning, match=rf"use {new_home}\.{name}"):
        old = getattr(cli, name)
    assert old is getattr(importlib.import_module(new_home), name)


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cli.nope  # noqa: B018
    with pytest.raises(ImportError):
        from napari_seamless_unet.cli import _stem  # noqa: F401
