"""``seamless-unet postprocess`` (instance labels from saved probabilities) and ``segment``'s instance options."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage

from napari_seamless_unet import instances_from_probabilities, load_model, segment
from napari_seamless_unet.cli import main
from napari_seamless_unet.core.postprocess import DEFAULT_THRESHOLD
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.weights import separate_touching
from napari_seamless_unet.io import write_tiff


def run_main(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def target_probabilities(n=1) -> np.ndarray:
    """Classes first: the training target of touching discs (objects with a gap where they touch), n planes."""
    planes = [separate_touching(touching_discs((80, 96), n_objects=10, seed=s)[1]) > 0 for s in range(n)]
    f = np.stack(planes).astype(np.float32)
    # Softer than 0/1, so that the threshold matters: a ramp from the objects' edges inward.
    f = np.stack([np.clip(ndimage.distance_transform_edt(p) / 3, 0, 1) for p in f]).astype(np.float32)
    return np.stack([1 - f, f])


OPTIONS = [
    [],
    ["--threshold", "0.4", "--min-size", "30", "--no-fill-holes"],
    ["--threshold", "0.5", "--method", "watershed", "--no-restore-borders", "--link-planes"],
]


@pytest.mark.parametrize("options", OPTIONS)
def test_postprocess_a_tiff_stack_matches_the_api(capsys, tmp_path, options):
    prob = target_probabilities(3)
    src = tmp_path / "cells_probabilities.tif"
    write_tiff(src, prob, "CZYX")  # ImageJ stores it as ZCYX: the axes come from the file
    out = tmp_path / "cells_labels.tif"
    status, stdout, _ = run_main(capsys, "postprocess", src, "-o", out, *options)
    assert status == 0 and str(out) in stdout and "objects" in stdout
    kwargs = {
        "threshold": float(options[options.index("--threshold") + 1])
        if "--threshold" in options
        else DEFAULT_THRESHOLD,
        "min_size": 30 if "--min-size" in options else 0,
        "fill_holes": "--no-fill-holes" not in options,
        "method": "watershed" if "watershed" in options else "components",
        "restore_borders": "--no-restore-borders" not in options,
        "link_planes": "--link-planes" in options,
    }
    expected = instances_from_probabilities(prob, **kwargs)
    assert expected.max() > 20
    np.testing.assert_array_equal(tifffile.imread(out), expected)


def test_postprocess_options_change_the_result(capsys, tmp_path):
    src = tmp_path / "p.tif"
    write_tiff(src, target_probabilities(2), "CZYX")
    results = []
    for options in OPTIONS:
        out = tmp_path / f"labels{len(results)}.tif"
        assert run_main(capsys, "postprocess", src, "-o", out, "-q", *options)[0] == 0
        results.append(tifffile.imread(out))
    assert not np.array_equal(results[0], results[1]) and not np.array_equal(results[0], results[2])


def test_postprocess_zarr_to_zarr_and_default_names(capsys, tmp_path):
    prob = target_probabilities(2)
    src = tmp_path / "p.zarr"
    stored = zarr.open_array(str(src), mode="w", shape=prob.shape, chunks=(1, 1, 32, 32), dtype="f4")
    stored[:] = prob
    stored.attrs["axes"] = "CZYX"
    assert run_main(capsys, "postprocess", src, "-q")[0] == 0
    written = zarr.open_array(str(tmp_path / "p_labels.zarr"), mode="r")
    assert written.attrs["axes"] == "ZYX"
    np.testing.assert_array_equal(written[:], instances_from_probabilities(prob))


def test_segment_passes_its_instance_options(capsys, tmp_path, discs, instance_model, device):
    image_path, _, image, _ = discs
    out = tmp_path / "labels.tif"
    options = ["--threshold", "0.45", "--min-size", "3", "--method", "watershed", "--no-restore-borders"]
    status, _, _ = run_main(capsys, "segment", instance_model, image_path, "-o", out, "--device", device, *options)
    assert status == 0
    kwargs = {"threshold": 0.45, "min_size": 3, "method": "watershed", "restore_borders": False}
    expected = segment(load_model(instance_model), image, device=device, **kwargs)
    np.testing.assert_array_equal(tifffile.imread(out), expected)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--threshold", "1.5"], "below 1"),
        (["--threshold", "high"], "expected a number"),
        (["--min-size", "-3"], ">= 0"),
        (["--method", "magic"], "invalid choice"),
        (["--axes", "ZYX"], "do not fit"),
    ],
)
def test_bad_options_are_one_line(capsys, tmp_path, argv, needle):
    src = tmp_path / "p.tif"
    write_tiff(src, target_probabilities(1)[:, 0], "CYX")
    try:
        status = main(["postprocess", str(src), *argv])
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status != 0 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_probabilities_of_a_semantic_model_are_refused(capsys, tmp_path):
    src = tmp_path / "four.tif"  # (three classes may be a three-class instance model's: background, interior, border)
    write_tiff(src, np.full((4, 40, 40), 1 / 4, np.float32), "CYX")
    status, _, err = run_main(capsys, "postprocess", src)
    assert status == 1 and "4 classes" in err and len(err.strip().splitlines()) == 1


def test_postprocess_runs_without_torch(tmp_path):
    src = tmp_path / "p.tif"
    write_tiff(src, target_probabilities(1)[:, 0], "CYX")
    code = (
        "import sys; from napari_seamless_unet.cli import main; "
        f"status = main(['postprocess', {str(src)!r}, '-q']); "
        "assert status == 0; assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p_labels.tif").exists()


def test_the_option_defaults_are_the_cores():
    import argparse

    from napari_seamless_unet.cli.postprocess import add_instance_options, instance_options

    parser = argparse.ArgumentParser()
    add_instance_options(parser)
    # not given: left to the core, whose defaults depend on the model (instances.default_options)
    given = instance_options(parser.parse_args([]))
    assert not {"threshold", "method", "min_size"} & set(given)
    assert instance_options(parser.parse_args(["--threshold", "0.4"]))["threshold"] == 0.4
