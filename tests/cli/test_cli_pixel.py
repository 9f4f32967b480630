"""``predict``/``segment --pixel-size`` and ``--no-rescale``: images of another pixel size than the model's are
resampled to it, as the API's ``voxel_size`` does; the size comes from the file's metadata by default."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_seamless_unet import UNet, load_model, predict, save_model, segment


@pytest.fixture
def model_at_1um(tmp_path):
    """An untrained tiny instance model that records a pixel size of 1 x 1 (um)."""
    torch.manual_seed(0)
    path = tmp_path / "at1.unet.pt"
    save_model(UNet(base_channels=4, depth=2, dropout=0.0, task="instances", voxel_size=(1.0, 1.0)), path)
    return path


@pytest.fixture
def fine_tiff(tmp_path, discs):
    """The discs image as an ImageJ TIFF at 0.5 um a pixel (2 pixels per um)."""
    path = tmp_path / "fine.tif"
    tifffile.imwrite(path, discs[2], imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    return path


def test_segment_resamples_to_the_models_pixel_size_from_the_option_or_the_metadata(
    cli, tmp_path, discs, model_at_1um, fine_tiff
):
    image_path, _, image, _ = discs  # a plain TIFF: no pixel size
    model = load_model(model_at_1um)
    expected = segment(model, image, device="cpu", voxel_size=(0.5, 0.5))
    assert not np.array_equal(expected, segment(model, image, device="cpu"))
    status, _, err = cli("segment", model_at_1um, image_path, "-o", tmp_path / "a.tif", "--pixel-size", "0.5,0.5")
    assert status == 0 and "pixel size 0.5 x 0.5 resampled to the model's 1 x 1" in err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), expected)
    status, _, err = cli("segment", model_at_1um, fine_tiff, "-o", tmp_path / "b.tif")  # from the ImageJ metadata
    assert status == 0 and "resampled" in err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), expected)
    # a Z,Y,X size gives its Y, X to a 2D model
    status, _, _ = cli("segment", model_at_1um, image_path, "-o", tmp_path / "c.tif", "--pixel-size", "2,0.5,0.5")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c.tif"), expected)


def test_no_rescale_and_unknown_sizes_predict_at_the_images_own(cli, tmp_path, discs, model_at_1um, fine_tiff):
    image_path, _, image, _ = discs
    model = load_model(model_at_1um)
    plain = predict(model, image, device="cpu")
    status, _, err = cli("predict", model_at_1um, fine_tiff, "-o", tmp_path / "p.tif", "--no-rescale")
    assert status == 0 and "resampled" not in err
    np.testing.assert_allclose(tifffile.imread(tmp_path / "p.tif"), plain, atol=1e-6)
    status, _, err = cli("predict", model_at_1um, image_path, "-o", tmp_path / "q.tif")
    assert status == 0 and "records no pixel size" in err and "--pixel-size" in err
    np.testing.assert_allclose(tifffile.imread(tmp_path / "q.tif"), plain, atol=1e-6)
    status, _, err = cli("predict", model_at_1um, image_path, "-o", tmp_path / "r.tif", "-q")
    assert status == 0 and err == ""


def test_the_dask_path_refuses_an_image_it_would_have_to_resample(cli, tmp_path, model_at_1um, fine_tiff):
    status, _, err = cli("segment", model_at_1um, fine_tiff, "-o", tmp_path / "d.zarr", "--workers", "1")
    assert status == 1 and err.count("\n") == 1
    assert "does not resample" in err and "--no-rescale" in err


def test_pixel_size_is_parsed_and_a_3d_model_needs_three(cli, tmp_path, fine_tiff):
    from napari_seamless_unet.cli import build_parser

    args = build_parser().parse_args(["segment", "m.pt", "a.tif", "--pixel-size", "0.5x0.5", "--no-rescale"])
    assert args.pixel_size == (0.5, 0.5) and args.no_rescale
    path = tmp_path / "3d.unet.pt"
    save_model(UNet(base_channels=2, depth=1, ndim=3, voxel_size=(3.0, 1.0, 1.0), task="instances"), path)
    status, _, err = cli("segment", path, fine_tiff, "--pixel-size", "0.5,0.5", "-q")
    assert status == 1 and "give Z,Y,X" in err
