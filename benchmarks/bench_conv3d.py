"""3D convolutions on this machine: ``conv3d`` against the same convolution through 2D ones, and 3D training steps.

Part 1 prints forward and forward+backward GFLOP/s of single unpadded 3x3x3 convolutions, as torch's ``conv3d``
and as one 2D convolution of the three z-neighbours stacked into channels (the form ``core.layers.Conv3d`` uses
where it is faster). Part 2 prints the time of one training step (forward, backward, Adam) of the 3D networks
the training defaults choose from (``train.defaults.BUDGET_CANDIDATES_3D`` and a few larger), with z spacing 3, in
float32 and under bf16 autocast (what 3D training uses on a CPU with native bf16).

Example::

    python benchmarks/bench_conv3d.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F


def _best(fn, repeat: int = 3) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def stacked(x, w, b):
    n, c, d, h, wd = x.shape
    xs = torch.cat([x[:, :, k : d - 2 + k] for k in range(3)], 1)
    xs = xs.transpose(1, 2).reshape(n * (d - 2), 3 * c, h, wd)
    weight = w.transpose(1, 2).reshape(w.shape[0], 3 * c, 3, 3)
    y = F.conv2d(xs, weight, b)
    return y.reshape(n, d - 2, *y.shape[1:]).transpose(1, 2)


def _rates(form, x, w, flops: int) -> list[float]:
    """Forward and forward+backward GFLOP/s of ``form(x, w)``."""
    forward = _best(lambda: form(x, w))
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    both = _best(lambda: form(xr, wr).sum().backward())
    return [flops / forward / 1e9, 3 * flops / both / 1e9]


def convolutions() -> None:
    print("in -> out, D x H x W | conv3d fwd | conv3d fwd+bwd | stack fwd | stack fwd+bwd  (GFLOP/s)")
    cases = [(1, 16, 24, 140), (16, 16, 24, 140), (16, 32, 10, 68), (32, 32, 10, 68), (32, 64, 6, 32)]
    cases += [(64, 64, 6, 32), (128, 128, 4, 14), (8, 8, 24, 140)]
    for cin, cout, d, h in cases:
        x = torch.randn(1, cin, d, h, h)
        w, b = torch.randn(cout, cin, 3, 3, 3) * 0.1, torch.zeros(cout)
        flops = 2 * cin * cout * 27 * (d - 2) * (h - 2) ** 2
        row = _rates(lambda x, w, b=b: F.conv3d(x, w, b), x, w, flops)
        row += _rates(lambda x, w, b=b: stacked(x, w, b), x, w, flops)
        print(f"{cin} -> {cout}, {d} x {h} x {h} | " + " | ".join(f"{v:.0f}" for v in row))


def steps() -> None:
    from napari_seamless_unet import TrainConfig
    from napari_seamless_unet.core.train.defaults import _step_seconds, network_geometry, training_tile_shape

    print("network | tile | output | step fp32 | output voxels/s fp32 | step bf16 autocast | output voxels/s bf16")
    for base, depth, out in [(8, 2, 32), (8, 2, 64), (16, 2, 48), (16, 2, 64), (16, 3, 64), (32, 2, 64)]:
        geometry = network_geometry(TrainConfig(ndim=3, voxel_size=(3, 1, 1), depth=depth))
        y = geometry.rules[1]
        tile = training_tile_shape(geometry, y.valid_input_size(out + 2 * y.halo, "up"), (3, 1, 1), [(32, 256, 256)])
        output = geometry.output_shape(tile)
        row = f"{base}/{depth} | {tile} | {output}"
        for precision in ("fp32", "bf16"):
            seconds = _step_seconds(base, depth, tile, (1, 2), torch.device("cpu"), False, (3.0, 1.0, 1.0), precision)
            row += f" | {seconds * 1e3:.0f} ms | {np.prod(output) / seconds / 1e3:.0f} k"
        print(row)


if __name__ == "__main__":
    torch.manual_seed(0)
    convolutions()
    steps()
