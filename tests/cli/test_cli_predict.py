"""``seamless-unet predict``, ``segment`` and ``info`` on small TIFF and zarr files, and their error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_seamless_unet import UNet, load_model, predict, save_model, segment
from napari_seamless_unet.cli import main


def run_main(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_segment_tiff_matches_the_api(capsys, tmp_path, discs, instance_model, device):
    image_path, _, image, _ = discs
    out = tmp_path / "labels.tif"
    status, stdout, _ = run_main(capsys, "segment", instance_model, image_path, "-o", out, "--device", device)
    assert status == 0
    assert str(out) in stdout
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == "YX"
        written = tif.asarray()
    assert written.shape == image.shape
    assert written.dtype == np.uint16  # instance labels, narrowed so that ImageJ/Fiji opens them
    expected = segment(load_model(instance_model), image, device=device)
    np.testing.assert_array_equal(written, expected)


def test_predict_tta_matches_the_api(capsys, tmp_path, discs, instance_model, device):
    image_path, _, image, _ = discs
    out = tmp_path / "probabilities.tif"
    status, _, _ = run_main(capsys, "predict", instance_model, image_path, "-o", out, "--tta", "--device", device)
    assert status == 0
    expected = predict(load_model(instance_model), image, device=device, tta=True)
    np.testing.assert_allclose(tifffile.imread(out), expected, atol=1e-5)
    plain = predict(load_model(instance_model), image, device=device)
    assert np.abs(expected - plain).max() > 1e-4  # the option reached the core


def test_segment_writes_labels_present(capsys, tmp_path, discs):
    # A network whose head says "foreground" everywhere: one object covering the plane.
    model = UNet(base_channels=4, depth=2, dropout=0.0, task="instances")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 5.0]))
    path = save_model(model, tmp_path / "all-foreground.unet.pt")
    out = tmp_path / "labels.tif"
    status, stdout, _ = run_main(capsys, "segment", path, discs[0], "-o", out, "-q")
    assert status == 0 and stdout == ""
    labels = tifffile.imread(out)
    assert np.all(labels == 1)


def test_predict_stack_to_zarr_lazily(capsys, tmp_path, discs, instance_model, device):
    image = discs[2]
    stack = np.stack([image, image[::-1]])
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "probabilities.zarr"
    status, _, _ = run_main(capsys, "predict", instance_model, src, "-o", out, "--tile-size", "60", "--device", device)
    assert status == 0
    result = zarr.open_array(str(out), mode="r")
    assert result.shape == (2, *stack.shape)
    assert result.dtype == np.float32
    assert result.attrs["axes"] == "CZYX"
    assert result.chunks == (1, 1, *stack.shape[1:])
    np.testing.assert_allclose(np.asarray(result).sum(axis=0), 1.0, atol=1e-5)
    expected = predict(load_model(instance_model), stack, axes="ZYX", device=device)
    np.testing.assert_allclose(np.asarray(result), expected, atol=1e-5)


def test_tile_size_does_not_change_the_result(capsys, tmp_path, discs, instance_model):
    """Overlap-tile prediction is seamless: small and large tiles give the same probabilities."""
    small, large = tmp_path / "small.tif", tmp_path / "large.tif"
    assert run_main(capsys, "predict", instance_model, discs[0], "-o", small, "--tile-size", "60", "-q")[0] == 0
    assert run_main(capsys, "predict", instance_model, discs[0], "-o", large, "--tile-size", "152x172", "-q")[0] == 0
    a, b = tifffile.imread(small), tifffile.imread(large)
    assert a.shape == b.shape == (2, *discs[2].shape)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_folder_in_folder_out_and_zarr_input(capsys, tmp_path, discs, semantic_model):
    folder = tmp_path / "images"
    folder.mkdir()
    image = discs[2]
    tifffile.imwrite(folder / "b.tif", image)
    tifffile.imwrite(folder / "a.tiff", (image * 1000).astype(np.uint16), compression="zlib", tile=(32, 32))
    z = zarr.open_array(str(folder / "c.zarr"), mode="w", shape=image.shape, dtype="f4", chunks=(32, 32))
    z[:] = image
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    status, stdout, _ = run_main(capsys, "segment", semantic_model, folder, "-o", out)
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif", "c_labels.zarr"]
    for name in ("a_labels.tif", "b_labels.tif"):
        labels = tifffile.imread(out / name)
        assert labels.shape == image.shape and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1, 2}
    zarr_labels = zarr.open_array(str(out / "c_labels.zarr"), mode="r")
    assert zarr_labels.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(zarr_labels), tifffile.imread(out / "b_labels.tif"))
    assert stdout.count("->") == 3


def test_default_output_is_beside_the_input(capsys, discs, instance_model):
    assert run_main(capsys, "segment", instance_model, discs[0], "-q")[0] == 0
    assert (discs[0].parent / "discs_labels.tif").exists()


def test_axes_option_for_channels_last(capsys, tmp_path, discs):
    model = UNet(in_channels=2, base_channels=4, depth=2, task="semantic")
    path = save_model(model, tmp_path / "two.unet.pt")
    image = np.stack([discs[2], discs[2] ** 2], axis=-1)  # YXC with two channels: not guessed from the shape
    src = tmp_path / "yxc.tif"
    tifffile.imwrite(src, image)
    out = tmp_path / "out.tif"
    status, _, err = run_main(capsys, "segment", path, src, "-o", out)
    assert status == 1 and "channel" in err
    assert run_main(capsys, "segment", path, src, "-o", out, "--axes", "YXC", "-q")[0] == 0
    assert tifffile.imread(out).shape == image.shape[:2]


def test_info_text_and_json(capsys, instance_model):
    status, out, _ = run_main(capsys, "info", instance_model)
    assert status == 0
    assert "depth 2" in out and "4 base channels" in out and "instances" in out
    assert "halo 20 px" in out and "percentile" in out and "background, foreground" in out
    params = sum(p.numel() for p in load_model(instance_model).parameters())
    assert f"{params:,} parameters" in out
    status, out, _ = run_main(capsys, "info", instance_model, "--json")
    info = json.loads(out)
    assert info["architecture"]["parameters"] == params
    assert info["task"] == "instances" and info["architecture"]["halo"] == 20
    assert info["versions"]["napari-seamless-unet"]


def _corrupt(tmp_path):
    path = tmp_path / "corrupt.unet.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(range(200)))
    return path


def _foreign(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    return path


def _truncated(tmp_path, model_path):
    path = tmp_path / "truncated.unet.pt"
    path.write_bytes(model_path.read_bytes()[:500])
    return path


def _nan_image(tmp_path, image):
    path = tmp_path / "nan.tif"
    image = image.copy()
    image[5, 5] = np.nan
    tifffile.imwrite(path, image)
    return path


def _rgb(tmp_path, image):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, (np.stack([image] * 3, axis=-1) * 100).astype(np.uint8), photometric="rgb")
    return path


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing model", "does not exist"),
        ("corrupt model", "not a readable model file"),
        ("truncated model", "not a readable model file"),
        ("foreign model", "not a napari-seamless-unet model file"),
        ("missing input", "does not exist"),
        ("invalid tile size", "nearest valid tile shape: (60, 60)"),
        ("unknown device", "unknown device"),
        ("unavailable device", "not available"),
        ("wrong channel count", "channel"),
        ("nan image", "nan"),
        ("bad axes", "axes"),
        ("too many outputs", "output folder"),
        ("not an image", "not a tiff"),
        ("bad argument", "expected a size like"),
        ("missing argument", "required"),
    ],
)
def test_user_errors_are_one_line(capsys, tmp_path, discs, instance_model, case, needle):
    image_path, _, image, _ = discs
    args = {
        "missing model": ["segment", tmp_path / "nope.unet.pt", image_path],
        "corrupt model": ["segment", _corrupt(tmp_path), image_path],
        "truncated model": ["info", _truncated(tmp_path, instance_model)],
        "foreign model": ["predict", _foreign(tmp_path), image_path],
        "missing input": ["segment", instance_model, tmp_path / "nope.tif"],
        "invalid tile size": ["segment", instance_model, image_path, "--tile-size", "61"],
        "unknown device": ["segment", instance_model, image_path, "--device", "toaster"],
        "unavailable device": ["segment", instance_model, image_path, "--device", "cuda:99"],
        "wrong channel count": ["segment", instance_model, _rgb(tmp_path, image)],
        "nan image": ["segment", instance_model, _nan_image(tmp_path, image)],
        "bad axes": ["segment", instance_model, image_path, "--axes", "ZYX"],
        "too many outputs": ["segment", instance_model, image_path, image_path, "-o", tmp_path / "x.tif"],
        "not an image": ["segment", instance_model, instance_model],
        "bad argument": ["segment", instance_model, image_path, "--tile-size", "big"],
        "missing argument": ["segment", instance_model],
    }[case]
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    _, err = capsys.readouterr()
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("seamless-unet: error: ")
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in err


def test_real_subprocess(tmp_path, discs, instance_model):
    """The installed console script and ``python -m`` both work, and a bad call prints one line."""
    out = tmp_path / "sub.tif"
    done = subprocess.run(
        ["seamless-unet", "segment", str(instance_model), str(discs[0]), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert tifffile.imread(out).shape == discs[2].shape
    info = subprocess.run(["seamless-unet", "info", str(instance_model)], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "depth 2" in info.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_seamless_unet",
            "segment",
            str(instance_model),
            str(discs[0]),
            "--tile-size",
            "61",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("seamless-unet: error: tile shape (61, 61)")
    version = subprocess.run(
        [sys.executable, "-m", "napari_seamless_unet", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("seamless-unet 0.")
