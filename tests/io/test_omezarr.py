"""OME-Zarr images and their labels: written with ome-zarr, opened again by ``ome_zarr.reader`` as a viewer does."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.io import (
    is_ome_zarr,
    open_image,
    read_ome_zarr,
    voxel_size,
    write_labels,
    write_ome_zarr,
)
from napari_seamless_unet.io.omezarr import image_scale, pyramid_factors

ome_reader = pytest.importorskip("ome_zarr.reader")
ome_io = pytest.importorskip("ome_zarr.io")


def reader_nodes(path):
    """What napari-ome-zarr sees: the nodes ``ome_zarr.reader.Reader`` finds from ``path``."""
    return list(ome_reader.Reader(ome_io.parse_url(str(path)))())


def labels_node(path):
    return next(n for n in reader_nodes(path) if n.load(ome_reader.Label))


def scales(node) -> list[list[float]]:
    return [
        next(t["scale"] for t in level if t["type"] == "scale") for level in node.metadata["coordinateTransformations"]
    ]


def axis_names(node) -> list[str]:
    return [a["name"] for a in node.metadata["axes"]]


@pytest.fixture(params=["0.4", "0.5"])
def image_3d(request, tmp_path):
    """A ZYX OME-Zarr image (voxels of 2.0 x 0.5 x 0.25 µm) in version 0.4 or 0.5, and its pixels."""
    rng = np.random.default_rng(0)
    data = rng.random((3, 256, 200)).astype(np.float32)
    path = tmp_path / f"cells-{request.param}.ome.zarr"
    write_ome_zarr(path, data, axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.25}, version=request.param)
    return path, data


def test_an_image_written_reads_back_with_axes_and_pixel_size(image_3d):
    path, data = image_3d
    assert is_ome_zarr(path)
    image = read_ome_zarr(path)
    assert image.axes == "ZYX"
    assert image.voxel_size == pytest.approx((2.0, 0.5, 0.25))
    np.testing.assert_array_equal(image.data.compute(), data)
    # the pyramid down to a side of 64: levels of 256, 128, 64 rows; Z is never downsampled
    node = reader_nodes(path)[0]
    assert [d.shape for d in node.data] == [(3, 256, 200), (3, 128, 100), (3, 64, 50)]
    assert scales(node) == [[2.0, 0.5, 0.25], [2.0, 1.0, 0.5], [2.0, 2.0, 1.0]]
    assert [a.get("unit") for a in node.metadata["axes"]] == ["micrometer"] * 3
    # the rest of the package opens it too: its full-resolution level
    array, axes = open_image(path)
    assert axes == "ZYX" and array.shape == data.shape


def test_labels_go_into_the_image_labels_group_with_its_scale(image_3d):
    path, data = image_3d
    labels = (data > 0.9).astype(np.int32) * np.arange(1, 4, dtype=np.int32)[:, None, None]
    target = write_labels(path, labels, "cells", axes="ZYX")
    assert target == path / "labels" / "cells"
    node = labels_node(target)
    assert axis_names(node) == ["z", "y", "x"]
    assert scales(node)[0] == [2.0, 0.5, 0.25]  # the image's own
    assert scales(node)[1] == [2.0, 1.0, 0.5]
    np.testing.assert_array_equal(node.data[0].compute(), labels)
    # nearest neighbour: the levels hold label values only, no blend of two ids
    assert set(np.unique(node.data[1].compute())) <= set(np.unique(labels))
    # the reader, started at the image, finds the labels below it (as napari-ome-zarr does)
    names = [n.metadata.get("name") for n in reader_nodes(path) if n.load(ome_reader.Label)]
    assert names == ["cells"]
    assert voxel_size(target) == pytest.approx((2.0, 0.5, 0.25))


def test_writing_labels_again_replaces_them_and_lists_each_name_once(image_3d):
    path, data = image_3d
    write_labels(path, np.ones(data.shape, np.int32), "cells", axes="ZYX")
    write_labels(path, np.full(data.shape, 2, np.int32), "cells", axes="ZYX")
    write_labels(path, np.zeros(data.shape, np.uint8), "nuclei", axes="ZYX")
    group = zarr.open_group(str(path / "labels"), mode="r")
    listed = group.attrs.get("labels") or group.attrs["ome"]["labels"]
    assert listed == ["cells", "nuclei"]
    assert int(read_ome_zarr(path / "labels" / "cells").data[0, 0, 0].compute()) == 2


def test_dask_labels_are_computed_once_block_by_block(tmp_path):
    image = tmp_path / "big.ome.zarr"
    write_ome_zarr(image, np.zeros((2, 300, 260), np.uint16), axes="TYX", scale={"Y": 0.3, "X": 0.3})
    blocks, lock = [], threading.Lock()

    def make_block(block, block_info=None):
        if block.size:  # (dask calls it once on an empty array to learn the output type)
            with lock:
                blocks.append(block.shape)
        (t0, _), (y0, _), (x0, _) = block_info[None]["array-location"]
        return np.full(block.shape, 1 + t0 * 100 + y0 // 100 * 10 + x0 // 100, np.int32)

    template = da.zeros((2, 300, 260), dtype=np.int32, chunks=(1, 100, 100))
    labels = template.map_blocks(make_block, dtype=np.int32)
    write_labels(image, labels, "blocks", axes="TYX", chunks=(1, 100, 100))
    assert len(blocks) == labels.npartitions  # the graph ran once: the pyramid and the ids come from the store
    assert max(np.prod(s) for s in blocks) == 100 * 100
    node = labels_node(image / "labels" / "blocks")
    np.testing.assert_array_equal(node.data[0].compute(), labels.compute())
    assert axis_names(node) == ["t", "y", "x"]
    assert scales(node)[0] == pytest.approx([1.0, 0.3, 0.3])
    level0 = zarr.open_array(str(image / "labels" / "blocks" / "s0"), mode="r")
    assert level0.chunks == (1, 100, 100)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".seamless-unet-")]  # the staging is removed


def test_axes_are_written_in_ngff_order(tmp_path):
    image = tmp_path / "stack.ome.zarr"
    write_ome_zarr(image, np.zeros((2, 4, 64, 64), np.uint8), axes="TZYX", scale={"Z": 1.5, "Y": 0.5, "X": 0.5})
    labels = np.arange(4 * 2 * 64 * 64, dtype=np.int32).reshape(4, 2, 64, 64)  # Z, T, Y, X
    node = labels_node(write_labels(image, labels, "zt", axes="ZTYX"))
    assert axis_names(node) == ["t", "z", "y", "x"]
    np.testing.assert_array_equal(node.data[0].compute(), labels.transpose(1, 0, 2, 3))
    assert scales(node)[0] == pytest.approx([1.0, 1.5, 0.5, 0.5])


def test_image_scale_keeps_the_image_units(tmp_path):
    image = tmp_path / "nm.ome.zarr"
    write_ome_zarr(
        image,
        np.zeros((64, 80), np.uint8),
        axes="YX",
        scale={"Y": 100.0, "X": 100.0},
        units={"Y": "nanometer", "X": "nanometer"},
    )
    assert image_scale(image) == ({"Y": 100.0, "X": 100.0}, {"Y": "nanometer", "X": "nanometer"})
    assert voxel_size(image) == pytest.approx((0.1, 0.1))  # micrometres
    node = labels_node(write_labels(image, np.zeros((64, 80), np.int32), "cells", axes="YX"))
    assert scales(node)[0] == [100.0, 100.0]  # on the image in any viewer, which reads the numbers
    assert [a.get("unit") for a in node.metadata["axes"]] == ["nanometer", "nanometer"]


def test_pyramid_factors_stop_at_a_side_of_64():
    assert pyramid_factors((96, 112), "YX") == []
    assert pyramid_factors((3, 256, 200), "ZYX") == [2, 4]
    assert pyramid_factors((1, 1024, 4096), "TYX") == [2, 4, 8, 16, 32, 64]


def test_mistakes_are_user_errors(tmp_path, image_3d):
    path, data = image_3d
    plain = tmp_path / "plain.zarr"
    zarr.open_array(str(plain), mode="w", shape=(8, 8), dtype=np.uint8)
    with pytest.raises(UNetInputError, match="not an OME-Zarr image"):
        write_labels(plain, np.zeros((8, 8), np.int32), "cells", axes="YX")
    with pytest.raises(UNetInputError, match="does not exist"):
        read_ome_zarr(tmp_path / "missing.ome.zarr")
    with pytest.raises(UNetInputError, match="integers"):
        write_labels(path, data, "cells", axes="ZYX")
    with pytest.raises(UNetInputError, match="plain name"):
        write_labels(path, np.zeros(data.shape, np.int32), "../cells", axes="ZYX")
    with pytest.raises(UNetInputError, match="do not fit"):
        write_labels(path, np.zeros(data.shape, np.int32), "cells", axes="YX")
