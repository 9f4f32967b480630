"""The command line with OME-Zarr (``--labels-into-image``, ``-o out.ome.zarr``) and ``--measure``: labels that
``ome_zarr.reader`` opens with the image's axes and scale, and tables equal to ``measure`` on the labels."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_seamless_unet import load_model, measure, segment
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.io import read_ome_zarr, write_ome_zarr, write_tiff

ome_reader = pytest.importorskip("ome_zarr.reader")
ome_io = pytest.importorskip("ome_zarr.io")


def labels_node(path):
    nodes = list(ome_reader.Reader(ome_io.parse_url(str(path)))())
    return next(n for n in nodes if n.load(ome_reader.Label))


def scale0(node) -> list[float]:
    return next(t["scale"] for t in node.metadata["coordinateTransformations"][0] if t["type"] == "scale")


def read_csv(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(params=["0.4", "0.5"])
def ome_image(request, tmp_path):
    """A 2D OME-Zarr image (0.3 µm pixels) of touching discs; returns (path, pixels)."""
    image, _ = touching_discs((128, 144), n_objects=12, radius=(7, 12), seed=4)
    path = tmp_path / "discs.ome.zarr"
    write_ome_zarr(path, image, axes="YX", scale={"Y": 0.3, "X": 0.3}, version=request.param)
    return path, image


def test_segment_writes_labels_into_the_image(cli, ome_image, intensity_model_path, device):
    path, image = ome_image
    status, out, err = cli("segment", intensity_model_path, path, "--labels-into-image", "--device", device)
    assert status == 0, err
    target = path / "labels" / "bright"  # the model file's name
    assert str(target) in out
    node = labels_node(target)
    assert [a["name"] for a in node.metadata["axes"]] == ["y", "x"]
    assert scale0(node) == pytest.approx([0.3, 0.3])  # the image's pixel size
    assert [a.get("unit") for a in node.metadata["axes"]] == ["micrometer", "micrometer"]
    assert len(node.data) == 2  # 128 x 144, then 64 x 72
    expected = segment(load_model(intensity_model_path), image, device=device)
    assert expected.max() > 2
    np.testing.assert_array_equal(node.data[0].compute(), expected)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".seamless-unet-")]


def test_labels_into_image_takes_a_name_and_replaces(cli, ome_image, instance_model):
    path, _ = ome_image
    for _ in range(2):
        assert cli("segment", instance_model, path, "--labels-into-image", "cells", "-q")[0] == 0
    assert read_ome_zarr(path / "labels" / "cells").axes == "YX"


def test_a_tiff_segmented_into_an_ome_zarr_image_keeps_its_pixel_size(cli, tmp_path, instance_model, device):
    image, _ = touching_discs((96, 112), n_objects=8, seed=1)
    stack = np.stack([image, image[::-1]]).astype(np.float32)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(
        src, stack, imagej=True, resolution=(1 / 0.4, 1 / 0.4), metadata={"axes": "ZYX", "spacing": 2.5, "unit": "um"}
    )
    out = tmp_path / "stack_labels.ome.zarr"
    status, _, err = cli("segment", instance_model, src, "-o", out, "--device", device)
    assert status == 0, err
    written = read_ome_zarr(out)
    assert written.axes == "ZYX"
    assert written.voxel_size == pytest.approx((2.5, 0.4, 0.4))
    expected = segment(load_model(instance_model), stack, axes="ZYX", device=device)
    np.testing.assert_array_equal(written.data.compute(), expected)


def test_predict_writes_an_ome_zarr_folder(cli, tmp_path, discs, instance_model):
    image_path, *_ = discs
    status, _, err = cli("predict", instance_model, image_path, "-o", tmp_path / "out", "--format", "ome.zarr", "-q")
    assert status == 0, err
    written = read_ome_zarr(tmp_path / "out" / "discs_probabilities.ome.zarr")
    assert written.axes == "CYX" and written.data.dtype == np.float32


def test_labels_into_image_refuses_other_inputs_and_an_output(cli, discs, ome_image, instance_model):
    status, _, err = cli("segment", instance_model, discs[0], "--labels-into-image")
    assert status != 0 and "is not an OME-Zarr image" in err
    status, _, err = cli("segment", instance_model, ome_image[0], "--labels-into-image", "-o", "x.tif")
    assert status != 0 and "give no -o" in err


def test_measure_writes_one_csv_for_all_inputs(cli, tmp_path, intensity_model_path, device):
    images = {}
    for seed in (1, 2):
        image, _ = touching_discs((96, 112), n_objects=8, seed=seed)
        images[seed] = tmp_path / f"cells{seed}.tif"
        tifffile.imwrite(images[seed], image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    table = tmp_path / "objects.csv"
    status, out, err = cli(
        "segment",
        intensity_model_path,
        *images.values(),
        "-o",
        tmp_path / "out",
        "--measure",
        table,
        "--device",
        device,
    )
    assert status == 0, err
    assert str(table) in out
    rows = read_csv(table)
    for path in images.values():
        labels = tifffile.imread(tmp_path / "out" / f"{path.stem}_labels.tif")
        expected = measure(labels, tifffile.imread(path), spacing=(0.5, 0.5))  # µm from the TIFF
        mine = [r for r in rows if r["file"] == str(path)]
        assert len(mine) == len(expected["label"]) == len(np.unique(labels)) - 1 > 2
        for column in ("label", "area", "centroid_y", "intensity_mean", "eccentricity"):
            np.testing.assert_allclose([float(r[column]) for r in mine], expected[column], rtol=1e-12)


def test_measure_a_stack_plane_by_plane_into_the_image(cli, tmp_path, intensity_model_path):
    image, _ = touching_discs((80, 96), n_objects=6, seed=3)
    path = tmp_path / "zstack.ome.zarr"
    stack = np.stack([image, image[:, ::-1], image[::-1]])
    write_ome_zarr(path, stack, axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.5})
    table = tmp_path / "zstack.csv"
    assert cli("segment", intensity_model_path, path, "--labels-into-image", "--measure", table, "-q")[0] == 0
    labels = read_ome_zarr(path / "labels" / "bright").data.compute()
    expected = measure(labels, stack, axes="ZYX", per_plane=True, spacing=(2.0, 0.5, 0.5))
    rows = read_csv(table)
    assert [int(r["z"]) for r in rows] == expected["z"].tolist()  # a 2D model's objects: per plane
    assert set(expected["z"]) == {0, 1, 2}
    np.testing.assert_allclose([float(r["area"]) for r in rows], expected["area"])


def test_postprocess_measures_and_writes_ome_zarr(cli, tmp_path):
    _, discs = touching_discs((80, 96), n_objects=8, seed=2)
    foreground = (discs > 0).astype(np.float32)
    src = tmp_path / "p_probabilities.tif"
    write_tiff(src, np.stack([1 - foreground, foreground]), "CYX")
    table = tmp_path / "p.csv"
    out = tmp_path / "p_labels.ome.zarr"
    status, _, err = cli("postprocess", src, "-o", out, "--measure", table, "-q")
    assert status == 0, err
    labels = read_ome_zarr(out).data.compute()
    assert labels.max() > 0
    rows = read_csv(table)
    assert len(rows) == len(np.unique(labels)) - 1
    assert "intensity_mean" not in rows[0]  # probabilities are no intensities
    np.testing.assert_allclose([float(r["area"]) for r in rows], measure(labels)["area"])
