"""The U-Net of Ronneberger, Fischer & Brox (2015), with unpadded convolutions and cropped skip connections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import shapes
from .normalization import Normalization

TASKS = ("semantic", "instances")


def _double_conv(in_channels: int, out_channels: int, batch_norm: bool = False) -> nn.Sequential:
    # Two unpadded 3x3 convolutions, each followed by a ReLU (paper, section 2); optionally batch normalisation
    # between convolution and ReLU. Batch norm, not group or instance norm: in eval mode it is a fixed per-channel
    # affine map, so a tile's output does not depend on the tile and overlap-tile prediction stays seamless.
    layers: list[nn.Module] = []
    for cin in (in_channels, out_channels):
        layers.append(nn.Conv2d(cin, out_channels, kernel_size=3, padding=0))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop the last two axes of ``x`` to ``size`` around their centre."""
    dy = (x.shape[-2] - size[0]) // 2
    dx = (x.shape[-1] - size[1]) // 2
    return x[..., dy : dy + size[0], dx : dx + size[1]]


class _Up(nn.Module):
    """2x2 up-convolution with stride 2 halving the channels, concatenation with the cropped skip, two convs."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = False):
        super().__init__()
        self.upconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = _double_conv(2 * out_channels, out_channels, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.upconv(x)
        return self.conv(torch.cat([center_crop(skip, x.shape[-2:]), x], dim=1))


class UNet(nn.Module):
    """The original U-Net: unpadded 3x3 convolutions, 2x2 max pooling, cropped skip connections.

    With the defaults (``base_channels=64, depth=4``) this is the network of the paper: 23 convolutional layers,
    a 572x572 input tile gives a 388x388 output.

    Parameters
    ----------
    in_channels : int
        Number of image channels (1 for grey images, 3 for RGB).
    num_classes : int
        Number of output classes (2 for foreground/background).
    base_channels : int
        Feature channels of the first level; they double at each step down (64 in the paper).
    depth : int
        Number of 2x2 poolings (4 in the paper).
    dropout : float
        Dropout probability at the end of the contracting path (the paper uses dropout there; 0 disables it).
    task : {"semantic", "instances"}
        What :func:`~napari_seamless_unet.segment` returns: class ids, or instance labels (connected components
        of the foreground class).
    normalization : Normalization or dict, optional
        Intensity normalisation applied before the network, saved with the model so that training and prediction
        agree. Defaults to per-channel percentiles (1, 99.8).
    class_names : sequence of str, optional
        Names of the classes, for display.
    batch_norm : bool
        Batch normalisation after each 3x3 convolution (not in the paper; it lets a small network learn in
        fewer steps). In eval mode it is a fixed affine map per channel, so tiled prediction stays exact.

    Notes
    -----
    Weights use He initialisation (normal with std ``sqrt(2 / fan_in)``) as in the paper.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        dropout: float = 0.5,
        *,
        task: str = "semantic",
        normalization: Normalization | dict | None = None,
        class_names: Sequence[str] | None = None,
        batch_norm: bool = False,
    ):
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 2),
            ("base_channels", base_channels, 1),
            ("depth", depth, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names but num_classes is {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.base_channels = base_channels
        self.depth = depth
        self.dropout_p = float(dropout)
        self.task = task
        self.batch_norm = bool(batch_norm)
        self.normalization = Normalization.from_any(normalization)
        if class_names is None:
            class_names = (
                ["background", "foreground"] if num_classes == 2 else [f"class {i}" for i in range(num_classes)]
            )
        self.class_names = [str(n) for n in class_names]

        channels = [base_channels * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            [
                _double_conv(in_channels if level == 0 else channels[level - 1], channels[level], self.batch_norm)
                for level in range(depth)
            ]
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.dropout = nn.Dropout2d(self.dropout_p) if self.dropout_p > 0 else nn.Identity()
        self.bottom = _double_conv(channels[depth - 1], channels[depth], self.batch_norm)
        self.up = nn.ModuleList(
            [_Up(channels[level + 1], channels[level], self.batch_norm) for level in reversed(range(depth))]
        )
        self.head = nn.Conv2d(channels[0], num_classes, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation: normal weights with std sqrt(2 / N), N = inputs of one neuron."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                # For a transposed conv, one output neuron sees in_channels * k * k / stride**2 = in_channels inputs.
                if isinstance(module, nn.ConvTranspose2d):
                    fan_in = module.in_channels
                else:
                    fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` to logits ``(N, num_classes, H - 2*halo, W - 2*halo)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise shapes.InvalidShapeError(
                f"the network expects {self.in_channels} input channel(s) as a (batch, {self.in_channels}, height, "
                f"width) tensor, got shape {tuple(x.shape)}"
            )
        # Fail before any work, with the nearest valid shapes, rather than deep inside a pooling layer.
        shapes.check_input_shape(tuple(x.shape[-2:]), self.depth, what="input")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottom(x))
        for block, skip in zip(self.up, reversed(skips)):
            x = block(x, skip)
        return self.head(x)

    # -- shape arithmetic bound to this network -------------------------------------------------------------
    @property
    def halo(self) -> int:
        """Context consumed on each side, in pixels."""
        return shapes.halo(self.depth)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for a spatial input shape."""
        return shapes.output_shape(input_shape, self.depth)

    def valid_input_shape(self, shape: Sequence[int], mode: str = "nearest") -> tuple[int, ...]:
        """The valid input shape nearest to ``shape``."""
        return shapes.valid_input_shape(shape, self.depth, mode)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``UNet(**model.config)`` rebuilds the same architecture."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "base_channels": self.base_channels,
            "depth": self.depth,
            "dropout": self.dropout_p,
            "task": self.task,
            "normalization": self.normalization.to_dict(),
            "class_names": list(self.class_names),
            "batch_norm": self.batch_norm,
        }

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, num_classes={self.num_classes}, base_channels={self.base_channels}, "
            f"depth={self.depth}, task={self.task!r}" + (", batch_norm=True" if self.batch_norm else "")
        )


def count_conv_layers(model: nn.Module) -> int:
    """Number of convolutional layers (up-convolutions included), 23 for the paper's network."""
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


def forward_flops(model: UNet, input_shape: Sequence[int], batch: int = 1) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass on a spatial input shape."""
    shapes.check_input_shape(input_shape, model.depth)
    flops = 0
    size = list(input_shape)
    convs: list[tuple[int, int, int, int]] = []  # (in, out, kernel*kernel, output pixels)
    ch = model.base_channels
    cin = model.in_channels
    for level in range(model.depth):
        cout = ch * 2**level
        size = [s - 2 for s in size]
        convs.append((cin, cout, 9, size[0] * size[1]))
        size = [s - 2 for s in size]
        convs.append((cout, cout, 9, size[0] * size[1]))
        size = [s // 2 for s in size]
        cin = cout
    cout = ch * 2**model.depth
    size = [s - 2 for s in size]
    convs.append((cin, cout, 9, size[0] * size[1]))
    size = [s - 2 for s in size]
    convs.append((cout, cout, 9, size[0] * size[1]))
    cin = cout
    for level in reversed(range(model.depth)):
        cout = ch * 2**level
        size = [s * 2 for s in size]
        convs.append((cin, cout, 1, size[0] * size[1]))  # 2x2 stride 2: each output pixel sees one tap
        size = [s - 2 for s in size]
        convs.append((2 * cout, cout, 9, size[0] * size[1]))
        size = [s - 2 for s in size]
        convs.append((cout, cout, 9, size[0] * size[1]))
        cin = cout
    convs.append((cin, model.num_classes, 1, size[0] * size[1]))
    for cin_, cout_, taps, pixels in convs:
        flops += 2 * cin_ * cout_ * taps * pixels
    return flops * batch


def flops_per_output_pixel(model: UNet) -> float:
    """Asymptotic FLOPs per output pixel of an infinitely large tile: the cost of the useful work."""
    ch, depth = model.base_channels, model.depth
    total = 2 * model.in_channels * ch * 9 + 2 * ch * ch * 9  # level 0, contracting
    for level in range(1, depth + 1):
        c_in, c_out = ch * 2 ** (level - 1), ch * 2**level
        total += (2 * c_in * c_out * 9 + 2 * c_out * c_out * 9) / 4**level
    for level in range(depth):
        c_in, c_out = ch * 2 ** (level + 1), ch * 2**level
        total += (2 * c_in * c_out + 2 * 2 * c_out * c_out * 9 + 2 * c_out * c_out * 9) / 4**level
    total += 2 * ch * model.num_classes
    return total
