"""On a LocalCluster of two worker processes: the same results as one process, the network sent once, blocks
written to zarr, and a worker killed during the computation changes nothing."""

from __future__ import annotations

import os
import signal
import time

import dask.array as da
import numpy as np
import pytest
import zarr
from dask_helpers import assert_same_partition, tiny

from napari_seamless_unet import predict, predict_dask, segment, segment_dask
from napari_seamless_unet.core.synthetic import touching_discs

distributed = pytest.importorskip("distributed")


@pytest.mark.parametrize("chunks", [32, (40, 24)])
def test_predict_dask_on_a_cluster_equals_predict(client, chunks):
    model = tiny(2)
    image = np.random.default_rng(0).random((2, 90, 77)).astype(np.float32)  # a stack of two planes
    expected = predict(model, image, device="cpu")
    np.testing.assert_allclose(predict_dask(model, image, chunks=chunks).compute(), expected, atol=1e-5)


def test_the_network_is_in_the_graph_once():
    model = tiny(2)
    lazy = predict_dask(model, np.zeros((96, 96), np.float32), chunks=16)
    graph = dict(lazy.__dask_graph__())
    payloads = [k for k, v in graph.items() if type(v).__name__ == "ModelPayload"]
    assert len(payloads) == 1
    assert sum(1 for k in graph if isinstance(k, tuple) and k[0] == lazy.name) == 36


def test_segment_dask_on_a_cluster_gives_segment_objects(client):
    image, _ = touching_discs((120, 140), n_objects=20, seed=2)
    model = tiny(2, task="instances", seed=3)
    threshold = float(np.median(predict(model, image, device="cpu")[1]))
    expected = segment(model, image, threshold=threshold, device="cpu")
    got = segment_dask(model, image, threshold=threshold, chunks=36).compute()
    assert_same_partition(expected, got)


def test_blocks_are_written_to_zarr_and_a_killed_worker_changes_nothing(client, tmp_path):
    model = tiny(3)
    image = np.random.default_rng(1).random((256, 256)).astype(np.float32)
    expected = predict(model, image, device="cpu")
    lazy = predict_dask(model, image, chunks=32)  # 64 blocks
    out = zarr.open(str(tmp_path / "out.zarr"), mode="w", shape=lazy.shape, chunks=(2, 32, 32), dtype="f4")
    future = client.compute(da.store(lazy, out, lock=False, compute=False))
    # Kill a worker process once blocks are running; its nanny starts a new one, the scheduler recomputes
    # what was lost.
    deadline = time.time() + 60
    while not any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.01)
    pids = client.run(os.getpid)
    assert not future.done()
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    future.result(timeout=240)
    assert set(client.run(os.getpid).values()) != set(pids.values())  # the worker was replaced
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
