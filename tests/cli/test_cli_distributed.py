"""``predict`` and ``segment`` on dask.distributed (``--workers``, ``--scheduler``): the same results as in one
process, inputs spread over the workers, and the one-line errors of the options."""

from __future__ import annotations

import logging
import os
import sys

import dask
import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_seamless_unet import UNet, load_model, predict, save_model
from napari_seamless_unet.core.synthetic import touching_discs

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def shared_cluster():
    """One local cluster of two worker processes for the tests of this module (starting one takes seconds)."""
    saved = dict(os.environ)  # distributed sets OMP_NUM_THREADS=1 and more here for its workers
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as local:
        yield local
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def local_clusters(monkeypatch, shared_cluster):
    """``--workers N`` starts the shared cluster instead of a new one: the keyword arguments of each start are
    recorded, and leaving the command does not close the shared cluster."""
    starts = []

    class Shared:
        def __init__(self, **kwargs):
            starts.append(kwargs)

        def __getattr__(self, name):
            return getattr(shared_cluster, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(distributed, "LocalCluster", Shared)
    return starts


@pytest.fixture
def blobs(tmp_path):
    """A 2D image (128 x 160, about 20 objects) as a TIFF; returns (path, image)."""
    image, _ = touching_discs((128, 160), n_objects=20, radius=(6, 11), seed=5)
    path = tmp_path / "blobs.tif"
    tifffile.imwrite(path, image)
    return path, image


def assert_same_partition(a: np.ndarray, b: np.ndarray) -> None:
    """``a`` and ``b`` label the same objects, whatever their ids: background alike, ids paired one to one."""
    assert a.shape == b.shape
    np.testing.assert_array_equal(a == 0, b == 0)
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def threshold_in_a_gap(probabilities: np.ndarray) -> float:
    """A threshold amid the foreground probabilities (30 to 70% of them above it) in the widest gap between
    two of them, so that differences in the last bits between processes cannot move a pixel across it."""
    values = np.unique(probabilities[1])
    middle = values[int(0.3 * len(values)) : int(0.7 * len(values))]
    widest = int(np.argmax(np.diff(middle)))
    assert middle[widest + 1] - middle[widest] > 1e-5, "no gap wide enough for a stable threshold"
    return float(middle[widest] + middle[widest + 1]) / 2


def test_workers_predict_a_zarr_equal_to_one_process(cli, tmp_path, blobs, instance_model):
    """A real ``--workers 2``: a local cluster started for the command (and closed after it)."""
    path, image = blobs
    here, there = tmp_path / "here.zarr", tmp_path / "there.zarr"
    assert cli("predict", instance_model, path, "-o", here, "-q")[0] == 0
    status, stdout, stderr = cli("predict", instance_model, path, "-o", there, "--workers", "2", "--chunk-size", "64")
    assert status == 0, stderr
    assert f"{path} -> {there} (probabilities 2x128x160 CYX)" in stdout
    assert "dask dashboard: http" in stderr
    expected, written = zarr.open_array(str(here), mode="r"), zarr.open_array(str(there), mode="r")
    assert written.shape == expected.shape == (2, *image.shape)
    assert written.dtype == np.float32
    assert written.chunks == expected.chunks
    assert dict(written.attrs) == dict(expected.attrs)  # axes, source, model, output
    np.testing.assert_allclose(np.asarray(written), np.asarray(expected), atol=1e-5)


@pytest.mark.parametrize("fill", ["--no-fill-holes", "--fill-holes"])
def test_workers_segment_the_same_objects(cli, tmp_path, blobs, instance_model, local_clusters, fill):
    path, image = blobs
    threshold = threshold_in_a_gap(predict(load_model(instance_model), image))
    options = ("--threshold", threshold, fill, "-q")
    here, there = tmp_path / "here.tif", tmp_path / "there.zarr"
    assert cli("segment", instance_model, path, "-o", here, *options)[0] == 0
    status, stdout, stderr = cli(
        "segment", instance_model, path, "-o", there, "--workers", "2", "--chunk-size", "64x80", *options
    )
    assert status == 0, stderr
    assert stdout == stderr == ""  # --quiet: no dashboard, no bar, no summary
    assert local_clusters == [
        {
            "n_workers": 2,
            "processes": True,
            "threads_per_worker": 1,
            "memory_limit": "auto",
            "silence_logs": logging.CRITICAL,  # a failed block's error is the command's one line
        }
    ]
    expected, written = tifffile.imread(here), zarr.open_array(str(there), mode="r")
    assert written.dtype == np.int32 and written.attrs["axes"] == "YX"
    assert len(np.unique(expected)) > 5  # several objects, some across the blocks (64 x 80):
    assert np.intersect1d(expected[63], expected[64]).any() and np.intersect1d(expected[:, 79], expected[:, 80]).any()
    assert_same_partition(np.asarray(written), expected)


def test_a_folder_is_spread_over_the_workers(cli, tmp_path, discs, semantic_model, local_clusters):
    folder, out = tmp_path / "images", tmp_path / "out"
    folder.mkdir()
    image = discs[2]
    for name, data in (("a.tif", image), ("b.tif", image[::-1]), ("c.tif", image)):  # c: a copy of a
        tifffile.imwrite(folder / name, data)
    status, stdout, stderr = cli(
        "segment", semantic_model, folder, "-o", out, "--workers", "2", "--memory-limit", "1GB"
    )
    assert status == 0, stderr
    assert local_clusters[0]["n_workers"] == 2 and local_clusters[0]["memory_limit"] == 10**9
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif", "c_labels.tif"]
    lines = stdout.splitlines()
    assert [line.split(" -> ")[0] for line in lines] == [str(folder / n) for n in ("a.tif", "b.tif", "c.tif")]
    assert all(line.endswith("(labels 96x112 YX)") for line in lines)
    assert "block" in stderr  # the bar counts the blocks of all three images
    single = tmp_path / "single"
    assert cli("segment", semantic_model, folder, "-o", single, "-q")[0] == 0
    for name in ("a_labels.tif", "b_labels.tif", "c_labels.tif"):
        with tifffile.TiffFile(out / name) as tif:
            assert tif.is_imagej and tif.series[0].axes == "YX"
            np.testing.assert_array_equal(tif.asarray(), tifffile.imread(single / name))


def test_scheduler_runs_on_an_existing_cluster(cli, tmp_path, discs, instance_model, shared_cluster):
    """A compressed, tiled TIFF (a zarr view that cannot be pickled) reaches the workers as its path."""
    image = discs[2]
    src, out = tmp_path / "tiled.tif", tmp_path / "probabilities.tif"
    tifffile.imwrite(src, image, tile=(32, 32), compression="zlib")
    address = shared_cluster.scheduler_address
    status, stdout, stderr = cli("predict", instance_model, src, "-o", out, "--scheduler", address, "--chunk-size", 48)
    assert status == 0, stderr
    assert "dask dashboard:" in stderr and "6/6" in stderr  # 2 x 3 blocks of 48 x 48
    assert stdout == f"{src} -> {out} (probabilities 2x96x112 CYX)\n"
    expected = predict(load_model(instance_model), image)
    np.testing.assert_allclose(tifffile.imread(out), expected, atol=1e-5)
    with distributed.Client(shared_cluster) as client:  # connecting to the cluster did not close it
        assert len(client.scheduler_info()["workers"]) == 2


def test_a_3d_model_in_blocks_of_z_y_x(cli, tmp_path, shared_cluster):
    torch.manual_seed(0)
    model = UNet(base_channels=2, depth=1, dropout=0.0, task="instances", ndim=3, voxel_size=(3, 1, 1))
    model_path = save_model(model, tmp_path / "vol.unet.pt")
    planes = [touching_discs((48, 56), n_objects=4, radius=(6, 9), seed=s)[0] for s in range(3)]
    volume = np.repeat(np.stack(planes), 4, axis=0).astype(np.float32)
    src, out = tmp_path / "vol.tif", tmp_path / "vol.zarr"
    tifffile.imwrite(src, volume, imagej=True, metadata={"axes": "ZYX"})
    address = shared_cluster.scheduler_address
    status, stdout, stderr = cli(
        "predict", model_path, src, "-o", out, "--scheduler", address, "--chunk-size", "6x24x28"
    )
    assert status == 0, stderr
    assert "(probabilities 2x12x48x56 CZYX)" in stdout
    written = zarr.open_array(str(out), mode="r")
    assert written.attrs["axes"] == "CZYX"
    np.testing.assert_allclose(np.asarray(written), predict(load_model(model_path), volume, axes="ZYX"), atol=1e-5)


def test_an_error_in_a_block_is_one_line(cli, tmp_path, discs, instance_model, shared_cluster):
    image = discs[2].copy()
    image[50, 60] = np.nan
    src = tmp_path / "nan.tif"
    tifffile.imwrite(src, image)
    address = shared_cluster.scheduler_address
    status, stdout, stderr = cli("predict", instance_model, src, "-o", tmp_path / "out.tif", "--scheduler", address)
    assert status == 1 and stdout == ""
    assert stderr.splitlines()[-1].startswith("seamless-unet: error: the image contains NaN or Inf values")
    assert not (tmp_path / "out.tif").exists()


def test_dead_workers_are_a_hint_about_memory(monkeypatch):
    from napari_seamless_unet.cli import _cluster

    class Died(Exception):
        pass

    class Future:
        def result(self):
            raise Died("all those workers died")

    with pytest.raises(_cluster.UNetInputError, match=r"dask workers died .* \(--memory-limit\)"):
        _cluster._raise(Future(), Died)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"],
            "--workers and --scheduler exclude each other",
        ),
        (["--threads-per-worker", "2"], "--threads-per-worker sets up the workers of --workers N"),
        (["--scheduler", "tcp://h:1", "--memory-limit", "4GB"], "--memory-limit sets up the workers of --workers N"),
        (["--chunk-size", "512"], "--chunk-size is the block size of the dask path"),
        (["--workers", "1", "--chunk-size", "8x512x512"], "--chunk-size 8x512x512 does not fit the model, a 2D"),
        (["--workers", "1", "--link-planes"], "--link-planes follows objects from plane to plane"),
    ],
)
def test_options_that_do_not_go_together(cli, tmp_path, discs, instance_model, argv, message):
    status, stdout, stderr = cli("segment", instance_model, discs[0], "-o", tmp_path / "out.tif", *argv)
    assert status == 1 and stdout == ""
    assert stderr == f"seamless-unet: error: {stderr.split('error: ', 1)[1]}"  # one line
    assert stderr.count("\n") == 1 and message in stderr
    assert not (tmp_path / "out.tif").exists()


def test_bad_memory_limit_and_unreachable_scheduler(cli, tmp_path, discs, instance_model):
    out = tmp_path / "out.tif"
    status, _, stderr = cli("predict", instance_model, discs[0], "-o", out, "--workers", "1", "--memory-limit", "lots")
    assert status == 1 and "--memory-limit 'lots': expected a size like 4GB" in stderr and stderr.count("\n") == 1
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        status, _, stderr = cli("predict", instance_model, discs[0], "-o", out, "--scheduler", "tcp://127.0.0.1:9")
    assert status == 1 and "cannot reach the dask scheduler at 'tcp://127.0.0.1:9'" in stderr
    assert stderr.count("\n") == 1


def test_without_distributed_one_line_says_what_to_install(cli, tmp_path, discs, instance_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    status, _, stderr = cli("predict", instance_model, discs[0], "-o", tmp_path / "out.tif", "--workers", "2")
    assert status == 1
    assert stderr == (
        'seamless-unet: error: --workers needs dask.distributed: pip install "napari-seamless-unet[distributed]"\n'
    )


def test_workers_write_labels_into_an_ome_zarr_image_and_measure(cli, tmp_path, intensity_model_path, local_clusters):
    """The dask path: blocks stored by the workers, then the pyramid into the image's labels/, and --measure."""
    from napari_seamless_unet import measure
    from napari_seamless_unet.io import read_ome_zarr, write_ome_zarr

    image, _ = touching_discs((128, 160), n_objects=20, radius=(6, 11), seed=5)
    path = tmp_path / "blobs.ome.zarr"
    write_ome_zarr(path, image, axes="YX", scale={"Y": 0.5, "X": 0.5})
    here = tmp_path / "here.tif"
    assert cli("segment", intensity_model_path, path, "-o", here, "-q")[0] == 0
    table = tmp_path / "blobs.csv"
    status, stdout, stderr = cli(
        "segment", intensity_model_path, path, "--labels-into-image", "--workers", "2", "--chunk-size", "64x80",
        "--measure", table,
    )  # fmt: skip
    assert status == 0, stderr
    assert f"-> {path / 'labels' / 'bright'} (labels 128x160 YX)" in stdout
    written = read_ome_zarr(path / "labels" / "bright")
    assert written.voxel_size == pytest.approx((0.5, 0.5))
    labels = written.data.compute()
    assert len(np.unique(labels)) > 5
    assert_same_partition(labels, tifffile.imread(here))
    with open(table) as file:
        rows = len(file.readlines()) - 1
    assert rows == len(measure(labels)["label"]) == len(np.unique(labels)) - 1
