"""predict_dask equals predict: any chunking, 2D planes, stacks, 3D volumes, dask, zarr and paths as input."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr
from dask_helpers import tiny
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_seamless_unet import UNetInputError, predict, predict_dask, segment, segment_dask
from napari_seamless_unet.core.dask_predict import default_chunks


@pytest.fixture(scope="module")
def models():
    return {depth: tiny(depth) for depth in (1, 2, 3)}


@settings(max_examples=25, deadline=None)
@given(
    depth=st.integers(1, 3),
    h=st.integers(45, 120),
    w=st.integers(45, 120),
    cy=st.integers(5, 70),
    cx=st.integers(5, 70),
    seed=st.integers(0, 1000),
)
def test_any_chunking_gives_predict(models, depth, h, w, cy, cx, seed):
    image = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    model = models[depth]
    expected = predict(model, image, device="cpu")
    lazy = predict_dask(model, image, chunks=(cy, cx), device="cpu")
    assert lazy.chunks[1][0] == min(cy, h) and lazy.chunks[2][0] == min(cx, w)
    np.testing.assert_allclose(lazy.compute(scheduler="threads"), expected, atol=1e-5)


def test_uneven_chunks_and_dask_input_chunks(models, device):
    image = np.random.default_rng(1).random((2, 3, 77, 90)).astype(np.float32)  # TZYX
    expected = predict(models[2], image, device=device)
    source = da.from_array(image, chunks=(1, 2, 30, 41))
    lazy = predict_dask(models[2], source, chunks=((20, 57), (33, 11, 46)), device=device)
    assert lazy.shape == expected.shape == (2, 2, 3, 77, 90)
    assert lazy.chunks[1:3] == ((1, 1), (1, 1, 1))  # planes of the stack in chunks of one
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-5)


def test_3d_network(device):
    model = tiny(2, ndim=3, voxel_size=(3.0, 1.0, 1.0))
    image = np.random.default_rng(2).random((11, 52, 47)).astype(np.float32)
    expected = predict(model, image, device=device)
    for chunks in (None, (4, 16, 20), 9):
        np.testing.assert_allclose(
            predict_dask(model, image, chunks=chunks, device=device).compute(), expected, atol=1e-5
        )


def test_zarr_array_and_path_read_in_the_task(models, tmp_path, device):
    image = (np.random.default_rng(3).random((70, 64)) * 4000).astype(np.uint16)
    store = zarr.open(str(tmp_path / "image.zarr"), mode="w", shape=image.shape, chunks=(32, 32), dtype=image.dtype)
    store[:] = image
    expected = predict(models[2], image, device=device)
    np.testing.assert_allclose(predict_dask(models[2], store, chunks=24, device=device).compute(), expected, atol=1e-5)
    np.testing.assert_allclose(
        predict_dask(models[2], tmp_path / "image.zarr", chunks=40, device=device).compute(), expected, atol=1e-5
    )


def test_semantic_segment_dask_is_the_argmax(models, device):
    image = np.random.default_rng(4).random((66, 81)).astype(np.float32)
    np.testing.assert_array_equal(
        segment_dask(models[2], image, chunks=20, device=device).compute(), segment(models[2], image, device=device)
    )


def test_nothing_runs_before_compute(models, monkeypatch):
    from napari_seamless_unet.core import dask_predict

    calls = []
    monkeypatch.setattr(dask_predict, "run_block", lambda *a: calls.append(a))
    predict_dask(models[2], np.zeros((64, 64), np.float32), chunks=16)
    assert not calls


def test_default_chunks_are_on_the_pooling_grid(models):
    model = models[3]
    chunks = default_chunks(model, (5000, 300))
    assert chunks[0] % 8 == 0 and chunks[1] == 304  # no larger than the image needs, rounded to 2**depth
    assert abs(chunks[0] - 1024) <= 8
    lazy = predict_dask(model, da.zeros((5000, 300), chunks=(1000, 300), dtype=np.float32))
    assert lazy.chunks[1][0] == chunks[0] and lazy.chunks[2] == (300,)


def test_bad_chunks_and_images_are_refused_before_any_work(models):
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(UNetInputError, match="one block size per axis"):
        predict_dask(models[2], image, chunks=(16, 16, 16))
    with pytest.raises(UNetInputError, match="add up to 64"):
        predict_dask(models[2], image, chunks=((30, 30), (64,)))
    with pytest.raises(UNetInputError, match="channel"):
        predict_dask(models[2], np.zeros((2, 64, 64), np.float32), axes="CYX")
