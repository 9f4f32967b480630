"""Finding and opening image files: folders, TIFF (mapped or decoded tile by tile), zarr, npy."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.io import image_stem, is_zarr, list_images, open_image, open_zarr
from napari_seamless_unet.io.read import _axes_from_letters


def test_tiff_axes_are_read_from_the_file(tmp_path):
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, np.zeros((3, 2, 40, 50), np.uint16), imagej=True, metadata={"axes": "TCYX"})
    data, axes = open_image(path)
    assert data.shape == (3, 2, 40, 50) and axes == "TCYX"
    assert isinstance(data, np.memmap)  # uncompressed: mapped, not read
    compressed = tmp_path / "compressed.tif"
    tifffile.imwrite(compressed, np.arange(64 * 80, dtype=np.uint16).reshape(64, 80), compression="zlib", tile=(32, 32))
    data, axes = open_image(compressed)
    assert isinstance(data, zarr.Array) and axes == "YX"  # decoded tile by tile when read
    np.testing.assert_array_equal(data[10:40, 5:70], tifffile.imread(compressed)[10:40, 5:70])
    assert _axes_from_letters("IYX", 3) is None  # an unnamed sequence: left to the shape and the model
    assert _axes_from_letters("YXS", 3) == "YXC"


def test_open_image_not_lazy_reads_into_memory(tmp_path):
    image = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    tifffile.imwrite(tmp_path / "a.tif", image)
    np.save(tmp_path / "b.npy", image)
    for name in ("a.tif", "b.npy"):
        data, _ = open_image(tmp_path / name, lazy=False)
        assert type(data) is np.ndarray
        np.testing.assert_array_equal(data, image)
    assert isinstance(open_image(tmp_path / "b.npy")[0], np.memmap)


def test_list_images_of_a_folder(tmp_path):
    for name in ("b.tif", "a.TIFF", "c.npy", ".hidden.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    zarr.open_array(str(tmp_path / "d.zarr"), mode="w", shape=(4, 4), dtype="u1")
    assert [p.name for p in list_images(tmp_path)] == ["a.TIFF", "b.tif", "c.npy", "d.zarr"]
    assert list_images(tmp_path / "d.zarr") == [tmp_path / "d.zarr"]  # a zarr store is one image, not a folder
    assert list_images(tmp_path / "b.tif") == [tmp_path / "b.tif"]
    with pytest.raises(UNetInputError, match=r"training label path .* does not exist"):
        list_images(tmp_path / "nope", "training label")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UNetInputError, match="holds no images"):
        list_images(tmp_path / "empty")


def test_zarr_store_names_and_stems(tmp_path):
    zarr.open_group(str(tmp_path / "plain"), mode="w")
    assert is_zarr(tmp_path / "plain") and is_zarr(tmp_path / "x.zarr") and not is_zarr(tmp_path)
    assert image_stem(tmp_path / "cells.ome.tif") == "cells"
    assert image_stem(tmp_path / "cells.TIF") == "cells"
    assert image_stem(tmp_path / "cells.v2.zarr") == "cells.v2"
    assert image_stem(tmp_path / "cells.png") == "cells"


def test_open_zarr_group_takes_level_0_and_ome_axes(tmp_path):
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.attrs["multiscales"] = [{"axes": [{"name": "z"}, {"name": "y"}, {"name": "x"}], "datasets": []}]
    level0 = group.create_array("0", shape=(2, 16, 16), dtype="u2")
    level0[:] = 7
    group.create_array("1", shape=(2, 8, 8), dtype="u2")
    data, axes = open_zarr(tmp_path / "ome.zarr")
    assert data.shape == (2, 16, 16) and axes == "ZYX"
    data, axes = open_image(tmp_path / "ome.zarr", lazy=False)
    assert type(data) is np.ndarray and np.all(data == 7) and axes == "ZYX"
    array = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=(3, 8, 8), dtype="f4")
    array.attrs["axes"] = "CYX"
    assert open_zarr(tmp_path / "a.zarr")[1] == "CYX"
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(UNetInputError, match="holds no array"):
        open_zarr(tmp_path / "empty.zarr")


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("missing.tif", None, "does not exist"),
        ("notes.txt", b"hello", "is not a TIFF"),
        ("broken.tif", b"not a tiff at all", "not a readable TIFF"),
        ("broken.npy", b"not numpy", "not a readable .npy"),
    ],
)
def test_unreadable_images_are_input_errors(tmp_path, name, content, needle):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(UNetInputError, match=needle):
        open_image(tmp_path / name)


@pytest.mark.parametrize("layout", ["plain", "tiled", "npy"])
def test_image_file_pickles_small_and_opens_again_where_it_is_read(tmp_path, layout):
    """A memory map pickles its pixels and a zarr view of a tiled TIFF not at all; an ImageFile pickles its path."""
    import pickle

    import dask
    import dask.array as da

    from napari_seamless_unet.io import ImageFile

    data = np.arange(256 * 320, dtype=np.float32).reshape(256, 320)
    path = tmp_path / ("image.npy" if layout == "npy" else "image.tif")
    if layout == "npy":
        np.save(path, data)
    else:
        kwargs = {"tile": (64, 64), "compression": "zlib"} if layout == "tiled" else {}
        tifffile.imwrite(path, data, metadata={"axes": "YX"}, **kwargs)
    image = ImageFile(path)
    assert (image.shape, image.dtype, image.ndim) == ((256, 320), np.float32, 2)
    assert image.axes == (None if layout == "npy" else "YX")
    pickled = pickle.dumps(image)
    assert len(pickled) < 1000
    copy = pickle.loads(pickled)
    np.testing.assert_array_equal(copy[10:20, 300:], data[10:20, 300:])
    assert dask.base.tokenize(copy) == dask.base.tokenize(ImageFile(path))
    np.testing.assert_array_equal(da.from_array(copy, chunks=(100, 100)).compute(), data)
