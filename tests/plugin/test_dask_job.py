"""The lazy (dask) job of the Segment dock, without Qt: block-by-block computation, progress, cancel."""

from __future__ import annotations

import threading
import time

import dask.array as da
import numpy as np
import pytest
import torch
import zarr

import napari_seamless_unet
from napari_seamless_unet import UNet, segment
from napari_seamless_unet.core.progress import run
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.plugin._dask_job import DaskSegmentJob, DaskSegmentResult


def _model(task="instances") -> UNet:
    torch.manual_seed(0)
    return UNet(in_channels=1, num_classes=2, depth=2, base_channels=4, task=task).eval()


@pytest.fixture
def stack():
    """Two (64, 64) planes of touching discs as a dask array, one chunk a plane."""
    planes = [touching_discs((64, 64), n_objects=5, radius=(6, 10), seed=s)[0] for s in (1, 2)]
    return da.from_array(np.stack(planes).astype(np.float32), chunks=(1, 64, 64))


def _drive(job):
    """Run the job's generator to its end: (the events, the result)."""
    events, gen = [], job.run()
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        return events, stop.value


def test_instances_computed_block_by_block_like_segment(stack, same_objects):
    model = _model()
    job = DaskSegmentJob(model, stack, "ZYX", device="cpu", chunks=(32, 32), name="stack")
    events, result = _drive(job)
    assert isinstance(result, DaskSegmentResult) and not result.cancelled and not result.lazy
    assert result.blocks_total == 2 * 2 * 2 and result.blocks_done == result.blocks_total
    assert isinstance(result.labels, np.ndarray) and result.store is None
    expected = segment(model, stack.compute(), axes="ZYX", device="cpu")
    assert same_objects(result.labels, expected)  # the same objects; the ids may differ
    assert result.labels.dtype == expected.dtype == np.int32
    assert result.objects == len(np.unique(expected)) - 1 > 0
    # progress: tasks done of all the graph's, never backwards, ending complete; blocks counted on the way
    counted = [e for e in events if e.stage == "blocks"]
    assert events[0].stage == "graph" and counted
    assert all(e.total == counted[0].total for e in counted) and counted[0].total >= result.blocks_total
    assert [e.done for e in counted] == sorted(e.done for e in counted)
    assert counted[-1].done == counted[-1].total
    assert counted[-1].info == {"blocks": 8, "blocks_total": 8}
    blocks = [e.info["blocks"] for e in counted]
    assert blocks == sorted(blocks)


def test_a_large_result_goes_to_a_temporary_zarr_store(stack, same_objects):
    model = _model()
    job = DaskSegmentJob(model, stack, "ZYX", device="cpu", chunks=(32, 32), memory_limit=0)
    result = run(job.run())
    assert isinstance(result.labels, zarr.Array) and result.store is not None
    assert result.labels.chunks == (1, 32, 32)
    assert same_objects(result.labels[:], segment(model, stack.compute(), axes="ZYX", device="cpu"))


def test_cancel_stops_at_the_next_task_and_keeps_finished_blocks(stack, same_objects):
    model = _model()
    job = DaskSegmentJob(model, stack, "ZYX", device="cpu", chunks=(32, 32), num_workers=1)
    lazy_labels, computed = job.lazy_labels, []

    def cancelled_in_the_second_block():
        def block(values):
            computed.append(values.shape)
            if len(computed) == 2:
                job.cancel()  # as the Cancel button would, while a block is computed
            return values

        return lazy_labels().map_blocks(block, dtype=np.int32)

    job.lazy_labels = cancelled_in_the_second_block
    _, result = _drive(job)
    assert result.cancelled
    # the first block stored; the second stored or not, as dask fused its computation and its storing or not
    assert result.blocks_done in (1, 2) and result.blocks_total == 8
    assert len(computed) == 2  # no block started after the cancel
    expected = segment(model, stack.compute(), axes="ZYX", device="cpu")
    blocks = [(z, slice(y, y + 32), slice(x, x + 32)) for z in range(2) for y in (0, 32) for x in (0, 32)]
    written = [b for b in blocks if result.labels[b].any()]
    assert 1 <= len(written) <= result.blocks_done
    for b in blocks:  # a finished block as segment gives it; the others 0
        assert not result.labels[b].any() or same_objects(result.labels[b], expected[b])


def test_semantic_lazy_returns_the_graph_uncomputed(stack):
    model = _model("semantic")
    job = DaskSegmentJob(model, stack, "ZYX", device="cpu", chunks=(32, 32), compute=False, probabilities=True)
    _, result = _drive(job)
    assert result.lazy and isinstance(result.labels, da.Array) and result.blocks_done == 0
    assert result.labels.shape == stack.shape and result.labels.dtype == np.uint8
    assert isinstance(result.probabilities, da.Array) and result.probabilities.shape == (2, *stack.shape)
    np.testing.assert_array_equal(result.labels.compute(), segment(model, stack.compute(), axes="ZYX", device="cpu"))


def test_errors_of_the_computation_reach_the_job(stack):
    job = DaskSegmentJob(_model(), stack, "ZYX", device="cpu", chunks=(32, 32))
    lazy_labels = job.lazy_labels

    def failing(values):
        raise RuntimeError("disk full")

    job.lazy_labels = lambda: lazy_labels().map_blocks(failing, dtype=np.int32)
    with pytest.raises(RuntimeError, match="disk full"):
        _drive(job)


def test_link_planes_is_not_passed_to_segment_dask(stack, monkeypatch):
    seen = {}
    real = napari_seamless_unet.segment_dask

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(napari_seamless_unet, "segment_dask", spy)
    options = {"threshold": 0.4, "min_size": 3, "fill_holes": False, "method": "components", "link_planes": True}
    run(DaskSegmentJob(_model(), stack, "ZYX", device="cpu", options=options).run())
    assert "link_planes" not in seen and seen["threshold"] == 0.4 and seen["min_size"] == 3


def test_closing_the_generator_stops_dask(stack):
    job = DaskSegmentJob(_model(), stack, "ZYX", device="cpu", chunks=(32, 32), num_workers=1)
    lazy_labels, started = job.lazy_labels, threading.Event()

    def slow(values):
        started.set()
        time.sleep(0.2)
        return values

    job.lazy_labels = lambda: lazy_labels().map_blocks(slow, dtype=np.int32)
    gen = job.run()
    next(gen)  # the graph
    next(gen)  # the first count of tasks: dask runs
    assert started.wait(60)
    gen.close()  # as napari quitting its worker does
    assert job._cancel.is_set()
