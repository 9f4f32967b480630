"""``seamless-unet train`` and ``demo``: real (tiny, short) training runs on synthetic TIFFs, Ctrl-C, mistakes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from napari_seamless_unet import load_model
from napari_seamless_unet.cli import main
from napari_seamless_unet.core.synthetic import touching_discs

TINY = ["--size", "tiny", "-q"]


def run_main(capsys, *argv):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def folders(tmp_path):
    """images/ and labels/ folders with two 96 x 96 pairs, labels named <stem>_labels.tif."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for seed in (1, 2):
        image, label = touching_discs((96, 96), n_objects=8, radius=(7, 12), seed=seed)
        tifffile.imwrite(images / f"cells_{seed}.tif", image)
        tifffile.imwrite(labels / f"cells_{seed}_labels.tif", label.astype(np.uint16))
    return images, labels


def test_train_folders_then_info_and_segment(capsys, tmp_path, folders, device):
    model_path = tmp_path / "cells.unet.pt"
    status, out, err = run_main(
        capsys, "train", *folders, "-o", model_path, *TINY, "--steps", 6, "--val-every", 3, "--checkpoint-every", 3,
        "--device", device, "--seed", 1,
    )  # fmt: skip
    assert status == 0, err
    assert err == ""  # -q: no bars
    model = load_model(model_path)
    assert (model.base_channels, model.depth, model.task) == (8, 2, "instances")
    config = model.metadata["train_config"]
    assert config["steps"] == 6 and config["seed"] == 1
    assert model.metadata["history"]["step"][-1] == 6

    status, out, _ = run_main(capsys, "info", model_path)
    assert status == 0
    assert "steps trained: 6" in out and "depth 2" in out
    assert re.search(r"^  steps +6$", out, re.MULTILINE)  # the training settings, as a table

    out_path = tmp_path / "labels.tif"
    assert run_main(capsys, "segment", model_path, folders[0] / "cells_1.tif", "-o", out_path, "-q")[0] == 0
    labels = tifffile.imread(out_path)
    assert labels.shape == (96, 96) and labels.dtype == np.uint16


def test_train_three_instance_classes_then_segment(capsys, tmp_path, folders, device):
    model_path = tmp_path / "three.unet.pt"
    argv = ["train", *folders, "-o", model_path, *TINY, "--steps", 2, "--instance-classes", 3, "--device", device]
    status, _, err = run_main(capsys, *argv)
    assert status == 0, err
    model = load_model(model_path)
    assert (model.task, model.num_classes, model.class_names[2]) == ("instances", 3, "border")
    out_path = tmp_path / "labels.tif"
    assert run_main(capsys, "segment", model_path, folders[0] / "cells_1.tif", "-o", out_path, "-q")[0] == 0
    assert tifffile.imread(out_path).shape == (96, 96)
    assert run_main(capsys, "train", *folders, "--instance-classes", 4)[0] == 2  # argparse: not a choice


def test_train_with_batch_norm_says_so_in_the_summary(capsys, tmp_path, folders, device):
    model_path = tmp_path / "bn.unet.pt"
    argv = ["train", *folders, "-o", model_path, "--size", "tiny", "--steps", 2, "--batch-norm", "--device", device]
    status, out, err = run_main(capsys, *argv)
    assert status == 0, err
    assert load_model(model_path).batch_norm
    assert "batch norm on" in out and "batch norm on (auto)" not in out


def test_train_an_ensemble_says_so_in_the_summary(capsys, tmp_path, folders, device):
    model_path = tmp_path / "ensemble.unet.pt"
    argv = ["train", *folders, "-o", model_path, "--size", "tiny", "--steps", 2, "--members", 2, "--device", device]
    status, out, err = run_main(capsys, *argv)
    assert status == 0, err
    assert load_model(model_path).members == 2
    assert "members 2" in out and "members 2 (auto)" not in out


def test_train_semantic_with_validation_set_prints_summary(capsys, tmp_path, device):
    image, instances = touching_discs((96, 96), n_objects=8, seed=4)
    classes = np.where(instances > 0, 1 + instances % 2, 0).astype(np.uint8)  # classes 0, 1, 2
    paths = {}
    for name, data in (("img", image), ("lab", classes), ("vimg", image[::-1]), ("vlab", classes[::-1])):
        paths[name] = tmp_path / f"{name}.tif"
        tifffile.imwrite(paths[name], data)
    model_path = tmp_path / "semantic.unet.pt"
    status, out, err = run_main(
        capsys, "train", paths["img"], paths["lab"], "-o", model_path, "--task", "semantic", "--size", "tiny",
        "--steps", 4, "--val-every", 2, "--validation-images", paths["vimg"], "--validation-labels", paths["vlab"],
        "--device", device,
    )  # fmt: skip
    assert status == 0, err
    assert "training a U-Net for semantic (tiny: 8 base channels, depth 2)" in err  # the announcement and the bar
    assert "4/4" in err
    assert "steps trained: 4" in out and "validation IoU" in out and f"model saved to {model_path}" in out
    model = load_model(model_path)
    assert model.num_classes == 3 and model.task == "semantic"
    assert len(model.metadata["history"]["val_iou"]) >= 2


def test_demo_writes_its_files_and_an_accuracy(capsys, tmp_path, device):
    out_dir = tmp_path / "demo"
    status, out, err = run_main(capsys, "demo", "--steps", 3, "--out-dir", out_dir, "-q", "--device", device)
    assert status == 0, err
    assert re.search(r"accuracy vs ground truth: foreground IoU \d\.\d{3}; \d+ of \d+ discs found", out)
    assert "trained 3 of 3 steps" in out and "ended by all steps done" in out  # the demo says why training ended
    image = tifffile.imread(out_dir / "demo-image.tif")
    labels = tifffile.imread(out_dir / "demo-labels.tif")
    truth = tifffile.imread(out_dir / "demo-ground-truth.tif")
    assert image.shape == labels.shape == truth.shape == (256, 256)
    assert image.dtype == np.float32 and labels.dtype.kind == "u"
    assert truth.max() > 10
    model = load_model(out_dir / "demo-model.unet.pt")
    assert model.task == "instances" and model.metadata["history"]["step"][-1] == 3


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("unequal counts", "no label file matches"),
        ("validation half", "both --validation-images and --validation-labels"),
        ("fractional labels", "whole numbers"),
        ("missing labels", "does not exist"),
        ("output is a folder", "is a folder"),
        ("bad steps", "expected a number >= 1"),
        ("bad device", "unknown device"),
        ("invalid training tile", "tile"),
        ("wrong sizes", "shape"),
    ],
)
def test_train_mistakes_are_one_line(capsys, tmp_path, folders, case, needle):
    images = folders[0]
    extra = tmp_path / "extra"
    extra.mkdir()
    tifffile.imwrite(extra / "a.tif", np.zeros((96, 96), np.float32))
    frac = tmp_path / "frac.tif"
    tifffile.imwrite(frac, np.full((96, 96), 0.5, np.float32))
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((50, 50), np.uint16))
    one_image = images / "cells_1.tif"
    base = ["-o", tmp_path / "m.unet.pt", *TINY, "--steps", 2]
    args = {
        "unequal counts": ["train", images, extra, *base],
        "validation half": ["train", *folders, "--validation-images", images, *base],
        "fractional labels": ["train", one_image, frac, *base],
        "missing labels": ["train", images, tmp_path / "nope", *base],
        "output is a folder": ["train", *folders, *base, "-o", tmp_path],
        "bad steps": ["train", *folders, *base, "--steps", 0],
        "bad device": ["train", *folders, *base, "--device", "tpu9"],
        "invalid training tile": ["train", *folders, *base, "--tile-size", 61],
        "wrong sizes": ["train", one_image, small, *base],
    }[case]
    status, _, err = run_main(capsys, *args)
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("seamless-unet: error: ") and needle.lower() in lines[0].lower()
    assert not (tmp_path / "m.unet.pt").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery to a child differs on Windows")
def test_ctrl_c_saves_the_model_and_exits_130(tmp_path, folders):
    model_path = tmp_path / "interrupted.unet.pt"
    log = tmp_path / "stderr.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            ["seamless-unet", "train", *map(str, folders), "-o", str(model_path), "--size", "tiny",
             "--steps", "100000", "--checkpoint-every", "100000", "--val-every", "100000", "--device", "cpu"],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not re.search(r"\b[2-9]\d*/100000", log.read_text()):  # a few steps done
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "training did not start"
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = log.read_text()
    assert proc.returncode == 130, err
    assert f"interrupted; the last model was saved to {model_path}" in err
    assert "Traceback" not in err
    model = load_model(model_path)
    history = model.metadata["history"]
    assert history["stopped"] is True and 2 <= history["step"][-1] < 100000


def test_the_summary_names_the_settings_and_the_precision_chosen_for_the_device():
    from napari_seamless_unet.cli.train import history_summary

    settings = {"base_channels": 16, "depth": 4, "tile_size": 316, "learning_rate": 0.001, "device": "cpu"}
    auto = history_summary({"settings": {**settings, "precision": "bf16", "automatic": ["depth", "precision"]}})
    assert auto[0].startswith("settings: base channels 16, depth 4 (auto), tile size 316")
    assert auto[0].endswith(", precision bf16 (auto) on cpu")
    given = history_summary({"settings": {**settings, "precision": "fp32", "automatic": []}})
    assert given[0].endswith(", precision fp32 on cpu")
