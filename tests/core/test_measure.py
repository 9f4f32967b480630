"""``measure``: the table of ``skimage.measure.regionprops_table`` on the labels, in physical units, for planes,
volumes and stacks; and its CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from skimage.measure import regionprops_table

from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.core.measure import PROPERTIES_2D, PROPERTIES_3D, measure
from napari_seamless_unet.core.synthetic import touching_discs, touching_nuclei_3d
from napari_seamless_unet.io import write_csv

#: our column -> regionprops_table's, for a plane
NAMES_2D = {
    "label": "label",
    "area": "area",
    "centroid_y": "centroid-0",
    "centroid_x": "centroid-1",
    "bbox_min_y": "bbox-0",
    "bbox_min_x": "bbox-1",
    "bbox_max_y": "bbox-2",
    "bbox_max_x": "bbox-3",
    "eccentricity": "eccentricity",
    "equivalent_diameter_area": "equivalent_diameter_area",
    "intensity_mean": "intensity_mean",
    "intensity_max": "intensity_max",
}


@pytest.fixture(scope="module")
def discs():
    image, labels = touching_discs((96, 112), n_objects=10, radius=(7, 12), seed=3)
    return image, labels.astype(np.int32)


def assert_table_matches(ours, theirs, names):
    assert list(ours) == list(names)
    for mine, skimage_name in names.items():
        np.testing.assert_allclose(ours[mine], theirs[skimage_name], err_msg=mine)


def test_a_plane_matches_regionprops_table(discs):
    image, labels = discs
    table = measure(labels, image)
    expected = regionprops_table(labels, image, properties=PROPERTIES_2D)
    assert_table_matches(table, expected, NAMES_2D)
    assert len(table["label"]) == len(np.unique(labels)) - 1


def test_a_plane_in_physical_units(discs):
    image, labels = discs
    plain = measure(labels, image)
    table = measure(labels, image, spacing=(0.5, 0.25))
    expected = regionprops_table(labels, image, properties=PROPERTIES_2D, spacing=(0.5, 0.25))
    assert_table_matches(table, expected, NAMES_2D)
    np.testing.assert_allclose(table["area"], plain["area"] * 0.125)  # µm²
    np.testing.assert_allclose(table["centroid_y"], plain["centroid_y"] * 0.5)  # µm
    np.testing.assert_allclose(table["centroid_x"], plain["centroid_x"] * 0.25)
    np.testing.assert_array_equal(table["bbox_max_x"], plain["bbox_max_x"])  # pixel indices, to crop with
    np.testing.assert_allclose(table["intensity_mean"], plain["intensity_mean"])


def test_without_an_image_there_are_no_intensities(discs):
    _, labels = discs
    table = measure(labels)
    assert "intensity_mean" not in table and "area" in table


def test_a_volume_has_volumes_in_cubic_micrometres():
    image, labels = touching_nuclei_3d((12, 64, 64), n=5, seed=1)
    labels = labels.astype(np.int32)
    spacing = (2.0, 0.5, 0.5)
    table = measure(labels, image, spacing=spacing)
    expected = regionprops_table(labels, image, properties=PROPERTIES_3D, spacing=spacing)
    names = {"label": "label", "volume": "area"}
    names.update({f"centroid_{a}": f"centroid-{i}" for i, a in enumerate("zyx")})
    names.update({f"bbox_min_{a}": f"bbox-{i}" for i, a in enumerate("zyx")})
    names.update({f"bbox_max_{a}": f"bbox-{i + 3}" for i, a in enumerate("zyx")})
    names.update({k: k for k in ("equivalent_diameter_area", "intensity_mean", "intensity_max")})
    assert set(table) == set(names)
    for mine, theirs in names.items():
        np.testing.assert_allclose(table[mine], expected[theirs], err_msg=mine)
    voxels = np.bincount(labels.ravel())[table["label"]]
    np.testing.assert_allclose(table["volume"], voxels * 0.5)  # µm³: 2.0 x 0.5 x 0.5 per voxel


def test_a_stack_per_plane_has_a_plane_column(discs):
    image, labels = discs
    stack_labels = np.stack([labels, np.where(labels > 0, labels + 100, 0), np.zeros_like(labels)])
    stack_image = np.stack([image, image * 2, image])
    table = measure(stack_labels, stack_image, axes="ZYX", per_plane=True, spacing=(3.0, 0.5, 0.5))
    assert list(table)[:2] == ["label", "z"]
    assert "eccentricity" in table  # measured in 2D
    n = len(np.unique(labels)) - 1
    np.testing.assert_array_equal(table["z"], [0] * n + [1] * n)  # the empty plane adds no rows
    for z in (0, 1):
        expected = regionprops_table(stack_labels[z], stack_image[z], properties=PROPERTIES_2D, spacing=(0.5, 0.5))
        rows = table["z"] == z
        for mine, theirs in NAMES_2D.items():
            np.testing.assert_allclose(table[mine][rows], expected[theirs], err_msg=f"{mine} z={z}")


def test_time_is_iterated_and_volumes_measured_in_3d():
    _, labels = touching_nuclei_3d((8, 48, 48), n=3, seed=2)
    stack = np.stack([labels, labels]).astype(np.int32)  # T, Z, Y, X
    table = measure(stack, spacing=(2.0, 0.5, 0.5))
    assert list(table)[:2] == ["label", "t"] and "volume" in table and "centroid_z" in table
    single = measure(labels.astype(np.int32), spacing=(2.0, 0.5, 0.5))
    n = len(single["label"])
    np.testing.assert_array_equal(table["t"], [0] * n + [1] * n)
    np.testing.assert_allclose(table["volume"][n:], single["volume"])


def test_axes_in_another_order_and_channels(discs):
    image, labels = discs
    two = np.stack([image, 1 - image], axis=-1)  # Y, X, C
    table = measure(labels.T, two.transpose(1, 0, 2), axes="XY", channel_axis=-1)
    expected = regionprops_table(labels, two, properties=PROPERTIES_2D)
    np.testing.assert_allclose(table["centroid_y"], expected["centroid-0"])
    np.testing.assert_allclose(table["intensity_mean_c0"], expected["intensity_mean-0"])
    np.testing.assert_allclose(table["intensity_max_c1"], expected["intensity_max-1"])


def test_mistakes_are_user_errors(discs):
    image, labels = discs
    with pytest.raises(UNetInputError, match="spacing"):
        measure(np.stack([labels, labels]), axes="ZYX", spacing=(0.5, 0.5))  # a volume needs Z too
    with pytest.raises(UNetInputError, match="does not fit"):
        measure(labels, image[:10])
    with pytest.raises(UNetInputError, match="axes"):
        measure(labels, axes="ZYX")
    with pytest.raises(UNetInputError, match="cannot measure"):
        measure(np.stack([labels, labels]), axes="ZYX", properties=("eccentricity",))


def test_csv_has_every_column_and_blanks_where_a_table_lacks_one(tmp_path, discs):
    image, labels = discs
    table = measure(labels[:40], image[:40])
    first = {"file": np.array(["a.tif"] * len(table["label"])), **table}
    second = {"file": np.array(["b.tif"]), "label": np.array([7]), "area": np.array([3.5])}
    path = write_csv(tmp_path / "out" / "objects.csv", [first, second])
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(first)
    assert len(rows) == len(first["label"]) + 1
    assert rows[-1]["file"] == "b.tif" and rows[-1]["area"] == "3.5" and rows[-1]["eccentricity"] == ""
    assert float(rows[0]["area"]) == pytest.approx(first["area"][0])
