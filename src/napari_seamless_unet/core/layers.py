"""Building blocks of the valid U-Net in two and three dimensions.

A 3D convolution on a CPU is much faster written as 2D convolutions for most of the U-Net's layers: measured on
this project's 2-core AVX-512 CPU (torch 2.13, oneDNN), ``conv3d`` ran at 11-22 GFLOP/s where the input and
output channels differ (1 -> 16, 16 -> 32) and 80-120 at 64+ channels, while the same convolution as one 2D
convolution of the three z-neighbours stacked into channels ran at 58-157; only for equal, small channel counts
(8 -> 8 ... 32 -> 32) was ``conv3d`` faster (benchmarks/README.md, "3D convolutions"). :class:`Conv3d` keeps
``nn.Conv3d``'s parameters (so files and exports see a plain 3D convolution) and picks the faster form per
call; a convolution that does not look along z (kernel 1 there) is exactly a 2D convolution of every plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop the last ``len(size)`` axes of ``x`` to ``size`` around their centre."""
    index = [slice(None)] * (x.ndim - len(size))
    for n, s in zip(x.shape[-len(size) :], size):
        start = (n - s) // 2
        index.append(slice(start, start + s))
    return x[tuple(index)]


class Conv3d(nn.Conv3d):
    """An unpadded 3D convolution computed by whichever form is fastest on the device (see the module doc)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kz = self.kernel_size[0]
        n, c, d, h, w = x.shape
        if kz == 1:
            planes = x.transpose(1, 2).reshape(n * d, c, h, w)
            y = F.conv2d(planes, self.weight[:, :, 0], self.bias)
            return y.reshape(n, d, *y.shape[1:]).transpose(1, 2)
        if x.device.type != "cpu" or (self.in_channels == self.out_channels and self.in_channels < 64):
            return super().forward(x)
        # the kz neighbours of every output plane side by side in the channels: one 2D convolution
        depth_out = d - kz + 1
        stacked = torch.cat([x[:, :, k : k + depth_out] for k in range(kz)], 1)
        planes = stacked.transpose(1, 2).reshape(n * depth_out, kz * c, h, w)
        weight = self.weight.transpose(1, 2).reshape(self.out_channels, kz * c, *self.kernel_size[1:])
        y = F.conv2d(planes, weight, self.bias)
        return y.reshape(n, depth_out, *y.shape[1:]).transpose(1, 2)


def conv(ndim: int, cin: int, cout: int, kernel) -> nn.Module:
    return nn.Conv2d(cin, cout, kernel) if ndim == 2 else Conv3d(cin, cout, kernel)


def double_conv(ndim: int, cin: int, cout: int, kernel=3, batch_norm: bool = False) -> nn.Sequential:
    """Two unpadded convolutions, each followed by a ReLU (paper, section 2); optionally batch normalisation
    between convolution and ReLU. Batch norm, not group or instance norm: in eval mode it is a fixed per-channel
    affine map, so a tile's output does not depend on the tile and overlap-tile prediction stays seamless."""
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers.append(conv(ndim, c, cout, kernel))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout) if ndim == 2 else nn.BatchNorm3d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Up(nn.Module):
    """Up-convolution (kernel = stride = the pooling) halving the channels, concatenation with the cropped skip,
    two convolutions."""

    def __init__(self, ndim: int, cin: int, cout: int, pool=2, kernel=3, batch_norm: bool = False):
        super().__init__()
        transposed = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        self.upconv = transposed(cin, cout, kernel_size=pool, stride=pool)
        self.conv = double_conv(ndim, 2 * cout, cout, kernel, batch_norm)
        self.ndim = ndim

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.upconv(x)
        return self.conv(torch.cat([center_crop(skip, x.shape[-self.ndim :]), x], dim=1))
