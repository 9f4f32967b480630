"""The names that moved out of the cli module still work, with a warning."""

from __future__ import annotations

import importlib

import pytest

import napari_seamless_unet.cli as cli


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
