"""``seamless-unet uncertainty``: the float32 map of each input (shape without the channel axis, values in [0, 1])
and with ``--propose`` the regions CSV, best first."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile


def _rows(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_uncertainty_map_and_proposed_regions(cli, tmp_path, discs, instance_model, device):
    image_path, _, image, _ = discs
    out = tmp_path / "maps"
    argv = ["uncertainty", instance_model, image_path, "-o", out, "--propose", 3, "--region-size", 32]
    status, stdout, stderr = cli(*argv, "--device", device)
    assert status == 0, stderr
    values = tifffile.imread(out / "discs_uncertainty.tif")
    assert values.shape == image.shape and values.dtype == np.float32
    assert values.min() >= 0.0 and values.max() <= 1.0
    rows = _rows(out / "discs_regions.csv")
    assert list(rows[0]) == ["rank", "plane", "y0", "x0", "y1", "x1", "score"]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        y0, x0, y1, x1 = (int(row[k]) for k in ("y0", "x0", "y1", "x1"))
        assert (y1 - y0, x1 - x0) == (32, 32) and row["plane"] == ""
        assert float(row["score"]) == pytest.approx(float(values[y0:y1, x0:x1].mean()), abs=1e-4)
    assert "3 region(s) to annotate next in discs.tif" in stdout
    assert "1. y " in stdout


def test_uncertainty_of_a_stack_names_planes(cli, tmp_path, instance_model, device):
    rng = np.random.default_rng(0)
    stack = rng.random((2, 64, 72)).astype(np.float32)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    out = tmp_path / "stack_map.tif"
    argv = ["uncertainty", instance_model, path, "-o", out, "--axes", "ZYX", "--propose", 2, "--region-size", 24]
    status, _, stderr = cli(*argv, "--per-plane", 1, "-q", "--device", device)
    assert status == 0, stderr
    assert tifffile.imread(out).shape == (2, 64, 72)
    rows = _rows(tmp_path / "stack_regions.csv")
    assert sorted(r["plane"] for r in rows) == ["0", "1"]  # one per plane
    status, _, stderr = cli(*argv, "--per-plane", 1, "--separation", 1, "-q", "--device", device)
    assert status == 0, stderr
    a, b = ([int(r[k]) for k in ("y0", "x0", "y1", "x1")] for r in _rows(tmp_path / "stack_regions.csv"))
    assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])  # neighbouring planes kept apart


def test_uncertainty_refuses_one_output_file_for_two_inputs(cli, tmp_path, discs, instance_model):
    image_path = discs[0]
    other = tmp_path / "other.tif"
    other.write_bytes(image_path.read_bytes())
    status, _, stderr = cli("uncertainty", instance_model, image_path, other, "-o", tmp_path / "one.tif")
    assert status == 1 and "give an output folder instead" in stderr


def test_power_sampling_regions_are_the_core_draw_of_that_seed(cli, tmp_path, discs, instance_model, device):
    from napari_seamless_unet import propose_regions

    image_path = discs[0]
    out = tmp_path / "maps"
    argv = ["uncertainty", instance_model, image_path, "-o", out, "--propose", 3, "--region-size", 24]
    status, _, stderr = cli(*argv, "--sampling", "power", "--power", 2, "--seed", 5, "-q", "--device", device)
    assert status == 0, stderr
    values = tifffile.imread(out / "discs_uncertainty.tif")
    expected = propose_regions(values, 24, 3, sampling="power", power=2.0, seed=5)
    rows = _rows(out / "discs_regions.csv")
    assert [tuple(int(r[k]) for k in ("y0", "x0", "y1", "x1")) for r in rows] == [r.box for r in expected]


def test_disagreement_measure_writes_the_cores_map(cli, tmp_path, discs, instance_model, device):
    from napari_seamless_unet import load_model, uncertainty

    image_path, _, image, _ = discs
    out = tmp_path / "maps"
    argv = ["uncertainty", instance_model, image_path, "-o", out, "--measure", "disagreement", "--device", device]
    status, _, stderr = cli(*argv)
    assert status == 0, stderr
    values = tifffile.imread(out / "discs_uncertainty.tif")
    expected = uncertainty(load_model(instance_model), image, measure="disagreement", device=device)
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert not np.allclose(values, uncertainty(load_model(instance_model), image, device=device), atol=1e-3)


@pytest.mark.parametrize(("propose", "measure"), [(False, "entropy"), (True, "disagreement")])
def test_without_measure_the_map_is_the_entropy_and_with_propose_the_proposal_measure(
    cli, tmp_path, discs, instance_model, device, propose, measure
):
    from napari_seamless_unet import load_model, uncertainty
    from napari_seamless_unet.core.regions import PROPOSAL_MEASURE

    assert PROPOSAL_MEASURE == "disagreement"
    image_path, _, image, _ = discs
    out = tmp_path / "maps"
    argv = ["uncertainty", instance_model, image_path, "-o", out, "-q", "--device", device]
    status, _, stderr = cli(*argv, *(["--propose", 2, "--region-size", 24] if propose else []))
    assert status == 0, stderr
    expected = uncertainty(load_model(instance_model), image, measure=measure, device=device)
    np.testing.assert_allclose(tifffile.imread(out / "discs_uncertainty.tif"), expected, atol=1e-5)
