"""Pairing image files with label files by name, and loading the pairs for training."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.io import load_pairs, pair_images_and_labels


def test_pairing_by_stem_and_by_order(tmp_path):
    names = ["b.tif", "a.tif", "c.tif"]
    images = [tmp_path / n for n in names]
    labels = [tmp_path / "lab" / n for n in ("a_labels.tif", "c-mask.tif", "b.tif")]
    pairs = pair_images_and_labels(sorted(images), sorted(labels))
    assert [(i.name, la.name) for i, la in pairs] == [
        ("a.tif", "a_labels.tif"),
        ("b.tif", "b.tif"),
        ("c.tif", "c-mask.tif"),
    ]
    by_order = pair_images_and_labels(
        [tmp_path / "x1.tif", tmp_path / "x2.tif"], [tmp_path / "m1.tif", tmp_path / "m2.tif"]
    )
    assert [(i.name, la.name) for i, la in by_order] == [("x1.tif", "m1.tif"), ("x2.tif", "m2.tif")]
    with pytest.raises(ValueError, match="matches"):
        pair_images_and_labels([tmp_path / "x1.tif"], [tmp_path / "m1.tif", tmp_path / "m2.tif"])


def test_two_images_claiming_one_label_file_fall_back_to_order(tmp_path):
    images = [tmp_path / "a.tif", tmp_path / "a.npy"]  # the same stem: one label file cannot serve both
    labels = [tmp_path / "a_labels.tif", tmp_path / "z.tif"]
    assert pair_images_and_labels(images, labels) == list(zip(images, labels))


@pytest.fixture
def folders(tmp_path):
    """images/ with 3 images, labels/ with their label files, named in three ways and sorted in another order."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i, (image_name, label_name) in enumerate(
        [("a.tif", "a_masks.tif"), ("a_b.tif", "a_b.labels.tif"), ("c.tif", "c_gt.tif")]
    ):
        tifffile.imwrite(images / image_name, np.full((8, 10), i, np.float32))
        tifffile.imwrite(labels / label_name, np.full((8, 10), 10 + i, np.uint16))
    return images, labels


def test_load_pairs_from_folders(folders):
    images, labels = load_pairs(*folders)
    # "a_b.labels.tif" sorts before "a_masks.tif" but "a.tif" before "a_b.tif": found by name, not by order
    assert [int(i[0, 0]) for i in images] == [0, 1, 2]
    assert [int(la[0, 0]) for la in labels] == [10, 11, 12]
    assert all(type(a) is np.ndarray for a in images + labels)  # in memory, not mapped
    assert all(la.dtype == np.uint16 for la in labels)


def test_load_pairs_accepts_whole_float_labels_only(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((8, 8), np.float32))
    tifffile.imwrite(tmp_path / "whole.tif", np.arange(64, dtype=np.float32).reshape(8, 8))
    tifffile.imwrite(tmp_path / "frac.tif", np.full((8, 8), 0.5, np.float32))
    _, (labels,) = load_pairs(tmp_path / "img.tif", tmp_path / "whole.tif")
    assert labels.dtype == np.int64 and labels[7, 7] == 63
    with pytest.raises(UNetInputError, match=r"'frac\.tif' has dtype float32; labels must be whole numbers"):
        load_pairs(tmp_path / "img.tif", tmp_path / "frac.tif")
    with pytest.raises(UNetInputError, match="validation label path"):
        load_pairs(tmp_path / "img.tif", tmp_path / "nope", "validation")
