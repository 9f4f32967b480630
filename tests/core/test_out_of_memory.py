"""Out-of-memory recovery: a smaller batch, then smaller tiles (the same stitched result), then the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, predict
from napari_seamless_unet.core import inference
from napari_seamless_unet.core.devices import is_out_of_memory


def tiny(depth=2, seed=0):
    torch.manual_seed(seed)
    return UNet(in_channels=1, num_classes=2, base_channels=4, depth=depth).eval()


@pytest.mark.parametrize(
    "err",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4294967296 bytes."),
        MemoryError("Unable to allocate 3.0 GiB for an array"),
        RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"),
    ],
)
def test_out_of_memory_errors_are_recognised_on_every_device(err):
    assert is_out_of_memory(err)


def test_other_errors_are_not_taken_for_out_of_memory():
    assert not is_out_of_memory(RuntimeError("Given groups=1, weight of size [4, 1, 3, 3]"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only the allocators' error types


def test_out_of_memory_retries_with_smaller_batches_and_tiles(monkeypatch, device):
    model = tiny()
    image = np.random.default_rng(7).random((150, 150)).astype(np.float32)
    expected = predict(model, image, tile_shape=(172, 172), batch_size=1, device=device, precision="fp32")
    real_call = inference.TileRunner.__call__
    seen = []

    def limited(self, batch, output):
        seen.append(batch.shape)
        if batch.shape[0] * batch.shape[-1] * batch.shape[-2] > 2 * 76 * 76:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_call(self, batch, output)

    monkeypatch.setattr(inference.TileRunner, "__call__", limited)
    with pytest.warns(UserWarning, match="out of memory"):
        result = predict(model, image, tile_shape=(172, 172), batch_size=4, device=device, precision="fp32")
    assert seen[0][0] == 4 and (1, 1, 172, 172) in seen  # first fewer tiles a batch ...
    assert seen[-1][-1] < 172  # ... then smaller tiles
    np.testing.assert_allclose(result, expected, atol=2e-5)  # smaller tiles: the same stitched answer


def test_the_smaller_tile_is_kept_for_the_next_planes(monkeypatch):
    model = tiny()
    stack = np.random.default_rng(3).random((4, 150, 150)).astype(np.float32)
    real_call = inference.TileRunner.__call__
    big_calls = []

    def limited(self, batch, output):
        if batch.shape[-1] >= 172:
            big_calls.append(batch.shape)
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes.")
        return real_call(self, batch, output)

    monkeypatch.setattr(inference.TileRunner, "__call__", limited)
    with pytest.warns(UserWarning, match="out of memory"):
        predict(model, stack, axes="ZYX", tile_shape=(172, 172), batch_size=1, precision="fp32")
    assert len(big_calls) == 1  # one failure in the first plane, not one per plane


def test_errors_other_than_out_of_memory_are_not_swallowed(monkeypatch):
    def broken(self, batch, output):
        raise RuntimeError("something else")

    monkeypatch.setattr(inference.TileRunner, "__call__", broken)
    with pytest.raises(RuntimeError, match="something else"):
        predict(tiny(), np.zeros((64, 64), np.float32))


# A real allocation failure: a child process whose address space is limited (RLIMIT_AS) so that the network's
# activations for a 644x644 tile do not fit, while those of a quarter of it do.
_CHILD = textwrap.dedent(
    """
    import resource, sys, warnings
    import numpy as np, torch
    torch.set_num_threads(1)
    from napari_seamless_unet import UNet, predict
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=8, depth=2).eval()
    image = np.load(sys.argv[1])
    out = np.zeros((2, *image.shape), np.float32)
    predict(model, image[0, :100, :100], tile_shape=(60, 60))  # libraries and thread pools loaded first
    vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + 100 * 2**20, hard))  # the soft limit, so it can be lifted again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(model, image, axes="ZYX", tile_shape=(644, 644), out=out)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    np.save(sys.argv[2], out)
    for w in caught:
        print("WARNING", w.message)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_a_real_cpu_out_of_memory_is_recovered_with_smaller_tiles_once_for_the_stack(tmp_path):
    image = np.random.default_rng(0).random((3, 600, 600)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    env = {**os.environ, "MALLOC_ARENA_MAX": "1"}  # no 64 MiB arena reservations eating the address space
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "image.npy"), str(tmp_path / "out.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    retries = [line for line in done.stdout.splitlines() if "out of memory with tiles" in line]
    assert retries, f"the limit did not cause an out-of-memory error: {done.stdout}"
    shrunk_from = [line.split("tiles of ")[1].split(";")[0] for line in retries]
    assert len(shrunk_from) == len(set(shrunk_from)), f"the same tile failed again on a later plane: {retries}"

    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=8, depth=2).eval()
    expected = predict(model, image, axes="ZYX", tile_shape=(192, 192), precision="fp32")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=2e-5)


def test_a_real_cuda_out_of_memory_is_recovered(device, monkeypatch):
    if not device.startswith("cuda"):
        pytest.skip("needs --device cuda")
    dev = torch.device(device)
    # true float32 convolutions: TF32 (cuDNN's default) rounds differently for each tile size's algorithm
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=16, depth=2).eval()
    image = np.random.default_rng(0).random((4096, 4096)).astype(np.float32)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(dev).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 3 * 2**30 / total), dev)  # a 3 GiB GPU
    try:
        with pytest.warns(UserWarning, match="out of memory"):
            result = predict(model, image, tile_shape=(4116, 4116), batch_size=1, device=device, precision="fp32")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, dev)
    expected = predict(model, image, tile_shape=(1044, 1044), device=device, precision="fp32")
    np.testing.assert_allclose(result, expected, atol=2e-5)
