"""Pixel and voxel sizes read from ImageJ and OME TIFFs and from OME-Zarr stores."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_seamless_unet.io import voxel_size


def test_imagej_hyperstack_gives_z_from_spacing_and_y_x_from_the_resolution(tmp_path):
    path = tmp_path / "stack.tif"
    volume = np.zeros((5, 20, 30), np.uint8)
    metadata = {"spacing": 2.0, "unit": "um", "axes": "ZYX"}
    # tifffile's resolution is (X, Y) in pixels per unit
    tifffile.imwrite(path, volume, imagej=True, resolution=(1 / 0.25, 1 / 0.5), metadata=metadata)
    assert voxel_size(path) == pytest.approx((2.0, 0.5, 0.25))
    channels = tmp_path / "channels.tif"  # tifffile writes an ImageJ 3D array without axes as CYX: a plane
    tifffile.imwrite(channels, volume, imagej=True, resolution=(2.0, 2.0), metadata={"spacing": 3.0, "unit": "um"})
    assert voxel_size(channels) == pytest.approx((0.5, 0.5))
    plane = tmp_path / "plane.tif"
    tifffile.imwrite(plane, volume[0], imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    assert voxel_size(plane) == pytest.approx((0.5, 0.5))
    nm = tmp_path / "nm.tif"  # converted to micrometres
    tifffile.imwrite(
        nm, volume, imagej=True, resolution=(0.01, 0.01), metadata={"spacing": 300, "unit": "nm", "axes": "ZYX"}
    )
    assert voxel_size(nm) == pytest.approx((0.3, 0.1, 0.1))


def test_ome_tiff_physical_sizes(tmp_path):
    path = tmp_path / "stack.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeZ": 3.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5}
    tifffile.imwrite(path, np.zeros((4, 16, 16), np.uint16), ome=True, metadata=metadata)
    assert voxel_size(path) == pytest.approx((3.0, 0.5, 0.5))
    plane = tmp_path / "plane.ome.tif"
    metadata = {"axes": "YX", "PhysicalSizeY": 0.2, "PhysicalSizeX": 0.1, "PhysicalSizeXUnit": "nm"}
    tifffile.imwrite(plane, np.zeros((16, 16), np.uint16), ome=True, metadata=metadata)
    assert voxel_size(plane) == pytest.approx((0.2, 1e-4))


def test_no_size_recorded_gives_none(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((16, 16), np.uint8))
    tifffile.imwrite(tmp_path / "ij.tif", np.zeros((3, 16, 16), np.uint8), imagej=True)
    tifffile.imwrite(tmp_path / "ome.ome.tif", np.zeros((3, 16, 16), np.uint8), ome=True, metadata={"axes": "ZYX"})
    np.save(tmp_path / "a.npy", np.zeros((4, 4)))
    for name in ("plain.tif", "ij.tif", "ome.ome.tif", "a.npy", "missing.tif"):
        assert voxel_size(tmp_path / name) is None, name
    # a stack whose z spacing is unknown has no voxel size (its pixel size alone would not shape a 3D network)
    tifffile.imwrite(
        tmp_path / "no_z.ome.tif",
        np.zeros((3, 16, 16), np.uint8),
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    assert voxel_size(tmp_path / "no_z.ome.tif") is None


def test_ome_zarr_scale(tmp_path):
    path = tmp_path / "image.ome.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=(2, 4, 16, 16), dtype="uint8")
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in ("z", "y", "x")
    ]
    transform = [{"type": "scale", "scale": [1.0, 2.5, 0.4, 0.4]}]
    group.attrs["multiscales"] = [
        {"version": "0.4", "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": transform}]}
    ]
    assert voxel_size(path) == pytest.approx((2.5, 0.4, 0.4))
    plain = tmp_path / "plain.zarr"
    zarr.open_array(str(plain), mode="w", shape=(8, 8), dtype="uint8")
    assert voxel_size(plain) is None
