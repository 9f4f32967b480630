"""3D on the command line: ``train --ndim 3 --voxel-size``, the voxel size read from the files, ``info`` of a 3D
model, and ``predict``/``segment`` of volumes with it (one-line errors for planes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_seamless_unet import UNet, load_model, save_model
from napari_seamless_unet.cli import build_parser
from napari_seamless_unet.cli import train as train_cli
from napari_seamless_unet.core.synthetic import touching_discs


@pytest.fixture
def volume_pair(tmp_path):
    """A (12, 48, 48) ImageJ volume with voxels 3 x 1 x 1 um and its instance labels."""
    planes = [touching_discs((48, 48), n_objects=4, radius=(6, 9), seed=s) for s in range(3)]
    image = np.repeat(np.stack([p[0] for p in planes]), 4, axis=0).astype(np.float32)
    labels = np.repeat(np.stack([p[1] for p in planes]), 4, axis=0).astype(np.uint16)
    image_path, labels_path = tmp_path / "vol.tif", tmp_path / "vol_labels.tif"
    meta = {"axes": "ZYX", "spacing": 3.0, "unit": "um"}
    tifffile.imwrite(image_path, image, imagej=True, resolution=(1.0, 1.0), metadata=meta)
    tifffile.imwrite(labels_path, labels, imagej=True, metadata={"axes": "ZYX"})
    return image_path, labels_path


@pytest.fixture
def model_3d(tmp_path):
    torch.manual_seed(0)
    model = UNet(base_channels=2, depth=1, dropout=0.0, task="instances", ndim=3, voxel_size=(3, 1, 1))
    return save_model(model, tmp_path / "vol.unet.pt")


def test_ndim_and_voxel_size_are_parsed(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["train", "a.tif", "b.tif"])
    assert args.ndim is None and args.voxel_size is None  # not given: 2D, or the --init model's
    args = parser.parse_args(["train", "a.tif", "b.tif", "--ndim", "3", "--voxel-size", "3,1,0.5"])
    assert args.ndim == 3 and args.voxel_size == (3.0, 1.0, 0.5)
    for bad in (["--ndim", "4"], ["--voxel-size", "3,a,1"], ["--voxel-size", "3,0,1"], ["--voxel-size", "1"]):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["train", "a.tif", "b.tif", *bad])
        assert exit_.value.code == 2


def _caught_config(monkeypatch):
    """Stop ``train`` right after its settings line, keeping the config it would train with."""
    seen = {}

    def fake(args, images, labels, config, validation, desc="training"):
        seen["config"] = config
        return None, True  # as if interrupted before any step

    monkeypatch.setattr(train_cli, "run_training", fake)
    return seen


def test_settings_line_and_config_for_3d(cli, tmp_path, monkeypatch, volume_pair):
    seen = _caught_config(monkeypatch)
    out = tmp_path / "m.unet.pt"
    status, _, err = cli("train", *volume_pair, "-o", out, "--ndim", 3, "--voxel-size", "3,1,1")
    assert status == 130 and "3D network, voxels 3 x 1 x 1" in err
    assert seen["config"].ndim == 3 and seen["config"].voxel_size == (3.0, 1.0, 1.0)
    # default: the voxel size the image's metadata records
    status, _, err = cli("train", *volume_pair, "-o", out, "--ndim", 3)
    assert "3D network, voxels 3 x 1 x 1" in err and seen["config"].voxel_size == (3.0, 1.0, 1.0)
    # 2D: the pixel size only; without metadata nothing is claimed
    status, _, err = cli("train", *volume_pair, "-o", out)
    assert "2D network, pixels 1 x 1" in err and seen["config"].ndim == 2 and seen["config"].voxel_size == (1, 1)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, tifffile.imread(volume_pair[0]))
    status, _, err = cli("train", plain, volume_pair[1], "-o", out, "--ndim", 3)
    assert "3D network, isotropic voxels" in err and seen["config"].voxel_size is None


def test_voxel_size_must_fit_ndim_one_line(cli, tmp_path, volume_pair):
    status, _, err = cli("train", *volume_pair, "--ndim", 3, "--voxel-size", "1,1", "-q")
    assert status == 1 and err.count("\n") == 1 and "--voxel-size 1,1 does not fit --ndim 3" in err


def test_tiny_3d_training_through_the_cli(cli, tmp_path, volume_pair, device):
    out = tmp_path / "vol.unet.pt"
    status, _, err = cli(
        "train", *volume_pair, "-o", out, "--ndim", 3, "--base-channels", 2, "--depth", 1, "--steps", 2,
        "--device", device, "-q",
    )  # fmt: skip
    assert status == 0, err
    model = load_model(out)
    assert model.ndim == 3 and model.voxel_size == (3.0, 1.0, 1.0)


def test_info_of_a_3d_model(cli, model_3d):
    status, out, _ = cli("info", model_3d)
    assert status == 0
    assert "3D U-Net" in out and "voxels 3 x 1 x 1" in out and "input tile gives" in out
    status, out, _ = cli("info", model_3d, "--json")
    arch = json.loads(out)["architecture"]
    assert arch["ndim"] == 3 and arch["voxel_size"] == [3.0, 1.0, 1.0] and len(arch["halo"]) == 3
    assert len(arch["example_tile"][0]) == 3 and len(arch["example_tile"][1]) == 3


def test_predict_and_segment_classes_of_a_volume_with_a_3d_model(cli, tmp_path, model_3d, volume_pair, device):
    probs = tmp_path / "probs.tif"
    status, stdout, err = cli("predict", model_3d, volume_pair[0], "-o", probs, "--device", device)
    assert status == 0, err
    assert tifffile.imread(probs).shape == (12, 2, 48, 48) and "CZYX" in stdout  # an ImageJ hyperstack: ZCYX
    semantic = UNet(num_classes=3, base_channels=2, depth=1, task="semantic", ndim=3, voxel_size=(3, 1, 1))
    path = save_model(semantic, tmp_path / "semantic3d.unet.pt")
    out = tmp_path / "classes.tif"
    status, _, err = cli("segment", path, volume_pair[0], "-o", out, "-q", "--device", device)
    assert status == 0, err
    assert tifffile.imread(out).shape == (12, 48, 48)


def test_segment_instances_of_a_volume_with_a_3d_model(cli, tmp_path, model_3d, volume_pair, device):
    out = tmp_path / "labels.tif"
    status, stdout, err = cli("segment", model_3d, volume_pair[0], "-o", out, "--device", device)
    assert status == 0, err
    assert tifffile.imread(out).shape == (12, 48, 48) and "ZYX" in stdout


def test_a_3d_model_on_a_plane_is_a_one_line_error(cli, tmp_path, model_3d):
    plane = tmp_path / "plane.tif"
    tifffile.imwrite(plane, np.zeros((48, 48), np.float32))
    status, _, err = cli("segment", model_3d, plane, "-o", tmp_path / "o.tif", "-q")
    assert status == 1 and err.count("\n") == 1 and "3D network" in err and "Z axis" in err
    status, _, err = cli("segment", model_3d, plane, "-o", tmp_path / "o.tif", "--tile-size", "92")
    assert status == 1 and err.count("\n") == 1 and "Z x Y x X" in err
