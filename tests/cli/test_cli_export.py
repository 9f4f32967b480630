"""``seamless-unet export MODEL OUT.zip``: a bioimage.io package that bioimageio.spec accepts and that
``seamless-unet segment`` opens again with the same result."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tifffile

pytest.importorskip("bioimageio.core")

ARGS = ("--name", "Tiny discs U-Net", "--description", "Touching discs, for the tests.", "--author", "Test Person")


def test_export_writes_a_valid_package_that_segments_the_same(cli, tmp_path, discs, instance_model):
    from bioimageio.spec import load_description
    from bioimageio.spec.model import v0_5

    out = tmp_path / "discs.zip"
    status, stdout, stderr = cli("export", instance_model, out, *ARGS, "--test-image", discs[0], "--tag", "discs")
    assert status == 0, stderr
    assert "wrote" in stdout and "bioimageio test" in stdout
    descr = load_description(out)
    assert isinstance(descr, v0_5.ModelDescr), descr.validation_summary.format()
    assert "discs" in descr.tags and [a.name for a in descr.authors] == ["Test Person"]
    # the test input is the centre of the given image
    (x,) = descr.get_input_test_arrays()
    image = tifffile.imread(discs[0])
    top, left = ((n - s) // 2 for n, s in zip(image.shape, x.shape[2:]))
    np.testing.assert_array_equal(x[0, 0], image[top : top + x.shape[2], left : left + x.shape[3]])

    labels = {}
    for name, model in (("package", out), ("file", instance_model)):
        labels[name] = tmp_path / f"{name}_labels.tif"
        status, _, stderr = cli("segment", model, discs[0], "-o", labels[name], "-q", "--device", "cpu")
        assert status == 0, stderr
    np.testing.assert_array_equal(tifffile.imread(labels["package"]), tifffile.imread(labels["file"]))


def test_export_needs_a_zip_name(cli, tmp_path, instance_model):
    status, _, stderr = cli("export", instance_model, tmp_path / "model.yaml", *ARGS)
    assert status == 1 and "is a .zip file" in stderr and stderr.count("\n") == 1


def test_export_without_the_extra_says_what_to_install(cli, tmp_path, instance_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec.model", None)
    status, _, stderr = cli("export", instance_model, tmp_path / "m.zip", *ARGS)
    assert status == 1 and 'pip install "napari-seamless-unet[bioimageio]"' in stderr


def test_export_refuses_a_bad_name_in_one_line(cli, tmp_path, instance_model):
    status, _, stderr = cli("export", instance_model, tmp_path / "m.zip", *ARGS[2:], "--name", "a/b")
    assert status == 1 and "5 to 128 characters" in stderr and not (tmp_path / "m.zip").exists()
