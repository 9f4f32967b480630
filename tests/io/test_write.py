"""Writing results: output paths, zarr outputs and ImageJ-ready TIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.io import create_zarr_output, output_paths, write_tiff


def test_create_zarr_output_axes_attrs_and_chunks(tmp_path):
    path = tmp_path / "out.zarr"
    array = create_zarr_output(path, (2, 3, 1500, 40), np.float32, "CZYX", {"source": "a.tif", "output": "x"})
    array[1, 2, 1499, 39] = 0.5
    reopened = zarr.open_array(str(path), mode="r")
    assert reopened.shape == (2, 3, 1500, 40) and reopened.dtype == np.float32
    assert reopened.chunks == (1, 1, 1024, 40)  # planes of at most 1024 x 1024 pixels
    assert dict(reopened.attrs) == {"axes": "CZYX", "source": "a.tif", "output": "x"}
    assert reopened[1, 2, 1499, 39] == 0.5 and reopened[0, 0, 0, 0] == 0
    replaced = create_zarr_output(path, (4, 4), np.uint8, "YX")  # an existing store is replaced
    assert replaced.shape == (4, 4) and dict(zarr.open_array(str(path), mode="r").attrs) == {"axes": "YX"}


def test_write_tiff_imagej_hyperstack(tmp_path):
    labels = np.arange(2 * 3 * 4 * 5, dtype=np.int32).reshape(2, 3, 4, 5)  # ZCYX in the wrong order for ImageJ
    path = tmp_path / "labels.tif"
    write_tiff(path, labels, "CZYX")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZCYX"
        written = tif.asarray()
    assert written.dtype == np.uint16  # narrowed: ImageJ reads no 32-bit integers
    np.testing.assert_array_equal(written, labels.transpose(1, 0, 2, 3))


def test_write_tiff_keeps_what_imagej_cannot_read(tmp_path):
    data = np.array([[-1, 70000], [0, 1]], np.int32)
    path = tmp_path / "wide.tif"
    write_tiff(path, data, "YX")
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_imagej
        np.testing.assert_array_equal(tif.asarray(), data)


def test_output_paths(tmp_path):
    a, b = tmp_path / "in" / "a.tif", tmp_path / "in" / "b.zarr"
    assert output_paths([a, b], None, "labels") == [tmp_path / "in" / "a_labels.tif", tmp_path / "in" / "b_labels.zarr"]
    assert output_paths([a, b], tmp_path / "out", "probabilities", "zarr") == [
        tmp_path / "out" / "a_probabilities.zarr",
        tmp_path / "out" / "b_probabilities.zarr",
    ]
    assert output_paths([a], tmp_path / "one.tiff", "labels") == [tmp_path / "one.tiff"]
    (tmp_path / "folder.tif").mkdir()  # a folder named like a file is a folder
    assert output_paths([a], tmp_path / "folder.tif", "labels") == [tmp_path / "folder.tif" / "a_labels.tif"]


@pytest.mark.parametrize(
    ("inputs", "output", "needle"),
    [
        (["a.tif", "b.tif"], "x.tif", "2 input images but one output file"),
        (["a.tif"], "a.tif", "would overwrite its input"),
        (["in/a.tif", "other/a.tif"], "out", "two inputs have the same name"),
    ],
)
def test_output_paths_refuse_to_overwrite(tmp_path, inputs, output, needle):
    with pytest.raises(UNetInputError, match=needle):
        output_paths([tmp_path / p for p in inputs], tmp_path / output, "labels")
