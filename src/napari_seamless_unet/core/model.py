"""The U-Net of Ronneberger, Fischer & Brox (2015), with unpadded convolutions and cropped skip connections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import shapes
from .layers import Up, center_crop, double_conv
from .normalization import Normalization

TASKS = ("semantic", "instances")
CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Conv3d, nn.ConvTranspose3d)

__all__ = ["SoftmaxUNet", "UNet", "center_crop", "count_conv_layers", "flops_per_output_pixel", "forward_flops"]


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
    ndim : {2, 3}
        Spatial dimensions: 2 (the paper; planes, stacks plane by plane) or 3 (volumes ZYX, the 3D U-Net of
        Cicek et al. 2016: 3x3x3 convolutions, 2x2x2 pooling, cropped skips).
    voxel_size : sequence of float, optional
        The pixel (YX) or voxel (ZYX) size of the training data, recorded with the model. In 3D it shapes the
        network for anisotropic volumes (:func:`~napari_seamless_unet.core.shapes.anisotropic_rules`): where z
        is coarser than twice x and y, the first levels convolve in-plane only (1x3x3) and pool x and y only
        (1x2x2) until the spacings meet. ``None``: isotropic.
    members : int
        Independently initialised copies of the network, trained side by side (each on its own loss) and
        predicting together: the output is the logarithm of the members' mean class probabilities, so a softmax
        gives back their mean. A deep ensemble (Lakshminarayanan et al. 2017): where one member leaves a gap in a
        faint membrane, the others close it. 1 (the default) is the paper's single network; more cost that
        many times the compute. The members share the architecture, hence the tiling and the halo.

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
        ndim: int = 2,
        voxel_size: Sequence[float] | None = None,
        members: int = 1,
    ):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
        if voxel_size is not None:
            voxel_size = tuple(float(v) for v in voxel_size)
            if len(voxel_size) != ndim or not all(v > 0 for v in voxel_size):
                raise ValueError(f"voxel_size must be {ndim} positive numbers ({'ZYX'[-ndim:]}), got {voxel_size}")
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 2),
            ("base_channels", base_channels, 1),
            ("depth", depth, 1),
            ("members", members, 1),
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
        self.ndim = int(ndim)
        self.voxel_size = voxel_size
        # 2D stays the paper's network whatever the pixel size; 3D adapts its levels to anisotropic voxels
        if ndim == 3 and voxel_size is not None:
            self.geometry = shapes.Geometry(shapes.anisotropic_rules(voxel_size, depth))
        else:
            self.geometry = shapes.Geometry.paper(depth, ndim)
        self.normalization = Normalization.from_any(normalization)
        if class_names is None:
            class_names = (
                ["background", "foreground"] if num_classes == 2 else [f"class {i}" for i in range(num_classes)]
            )
        self.class_names = [str(n) for n in class_names]

        channels = [base_channels * 2**level for level in range(depth + 1)]
        kernels = [tuple(r.kernels[level] for r in self.geometry.rules) for level in range(depth + 1)]
        pools = [tuple(r.pools[level] for r in self.geometry.rules) for level in range(depth)]
        bn = self.batch_norm
        self.down = nn.ModuleList(
            [
                double_conv(
                    ndim, in_channels if level == 0 else channels[level - 1], channels[level], kernels[level], bn
                )
                for level in range(depth)
            ]
        )
        if ndim == 2:
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        else:
            self.pools = nn.ModuleList([nn.MaxPool3d(kernel_size=p, stride=p) for p in pools])
        dropout_type = nn.Dropout2d if ndim == 2 else nn.Dropout3d
        self.dropout = dropout_type(self.dropout_p) if self.dropout_p > 0 else nn.Identity()
        self.bottom = double_conv(ndim, channels[depth - 1], channels[depth], kernels[depth], bn)
        self.up = nn.ModuleList(
            [
                Up(ndim, channels[level + 1], channels[level], pools[level], kernels[level], bn)
                for level in reversed(range(depth))
            ]
        )
        self.head = (nn.Conv2d if ndim == 2 else nn.Conv3d)(channels[0], num_classes, kernel_size=1)
        # The first member is this module's own layers, so a single network's state dict keeps the keys of every
        # model file written before members existed (an empty ModuleList adds none); the others are whole networks
        # of their own, built from this one's config while it still describes a single network.
        self.other_members = nn.ModuleList()
        self.other_members.extend(UNet(**self.config) for _ in range(members - 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation: normal weights with std sqrt(2 / N), N = inputs of one neuron."""
        for module in self.modules():
            if isinstance(module, CONV_TYPES):
                # For a transposed conv, one output neuron sees in_channels * k * k / stride**2 = in_channels inputs.
                if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
                    fan_in = module.in_channels
                else:
                    fan_in = module.in_channels * math.prod(module.kernel_size)
                nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
                nn.init.zeros_(module.bias)

    @property
    def members(self) -> int:
        """Networks in this ensemble (1: the paper's single network)."""
        return 1 + len(self.other_members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, *spatial)`` to logits ``(N, num_classes, *spatial - 2*halo)``.

        With several ``members``: ``log`` of their mean class probabilities (float32), whose softmax is that mean.
        """
        self._check_input(x)
        if self.members == 1:
            return self._single_forward(x)
        # log mean_k softmax(z_k), accumulated member by member so that only one member's activations live at once
        total = None
        for logits in self._each_member(x):
            log_p = torch.log_softmax(logits.float(), dim=1)
            total = log_p if total is None else torch.logaddexp(total, log_p)
        return total - math.log(self.members)

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The logits of every member, each trained on its own loss (training uses this, prediction ``forward``)."""
        self._check_input(x)
        return list(self._each_member(x))

    def _each_member(self, x: torch.Tensor):
        yield self._single_forward(x)
        for member in self.other_members:
            yield member._single_forward(x)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            space = "height, width" if self.ndim == 2 else "depth, height, width"
            raise shapes.InvalidShapeError(
                f"the network expects {self.in_channels} input channel(s) as a (batch, {self.in_channels}, {space}) "
                f"tensor, got shape {tuple(x.shape)}"
            )
        # Fail before any work, with the nearest valid shapes, rather than deep inside a pooling layer.
        self.geometry.check_input_shape(tuple(x.shape[2:]), what="input")

    def _single_forward(self, x: torch.Tensor) -> torch.Tensor:
        """This module's own network (the first member): logits."""
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            skips.append(x)
            x = self.pool(x) if self.ndim == 2 else self.pools[level](x)
        x = self.dropout(self.bottom(x))
        for block, skip in zip(self.up, reversed(skips)):
            x = block(x, skip)
        return self.head(x)

    # -- shape arithmetic bound to this network -------------------------------------------------------------
    @property
    def halo(self):
        """Context consumed on each side: pixels (an int) in 2D, voxels per axis (a ZYX tuple) in 3D."""
        return self.geometry.halo[0] if self.ndim == 2 else self.geometry.halo

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for a spatial input shape."""
        return self.geometry.output_shape(input_shape)

    def valid_input_shape(self, shape: Sequence[int], mode: str = "nearest") -> tuple[int, ...]:
        """The valid input shape nearest to ``shape``."""
        return self.geometry.valid_input_shape(shape, mode)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``UNet(**model.config)`` rebuilds the same architecture.

        ``members`` appears only when above 1, so that a single network's file stays readable by versions from
        before ensembles.
        """
        config = {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "base_channels": self.base_channels,
            "depth": self.depth,
            "dropout": self.dropout_p,
            "task": self.task,
            "normalization": self.normalization.to_dict(),
            "class_names": list(self.class_names),
            "batch_norm": self.batch_norm,
            "ndim": self.ndim,
            "voxel_size": list(self.voxel_size) if self.voxel_size is not None else None,
        }
        if self.members > 1:
            config["members"] = self.members
        return config

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, num_classes={self.num_classes}, base_channels={self.base_channels}, "
            f"depth={self.depth}, task={self.task!r}"
            + (", batch_norm=True" if self.batch_norm else "")
            + (f", ndim=3, voxel_size={self.voxel_size}" if self.ndim == 3 else "")
            + (f", members={self.members}" if self.members > 1 else "")
        )


class SoftmaxUNet(UNet):
    """The same network (same constructor arguments, same weights) returning class probabilities, a softmax over
    the classes, instead of logits.

    What a bioimage.io package's weights compute (:func:`~napari_seamless_unet.core.bioimageio.export_bioimageio`):
    consumers such as deepImageJ show the network's output as it is, and expect probabilities.
    ``UNet(**model.config)`` with its state dict is the plain network again.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, *spatial)`` to probabilities ``(N, num_classes, *spatial - 2*halo)``."""
        return torch.softmax(super().forward(x), dim=1)


def count_conv_layers(model: nn.Module) -> int:
    """Number of convolutional layers (up-convolutions included), 23 for the paper's network."""
    return sum(isinstance(m, CONV_TYPES) for m in model.modules())


def forward_flops(model: UNet, input_shape: Sequence[int], batch: int = 1) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass on a spatial input shape."""
    geometry = model.geometry
    geometry.check_input_shape(input_shape)
    rules, depth = geometry.rules, model.depth
    size = [int(s) for s in input_shape]
    convs: list[tuple[int, int, int, int]] = []  # (in, out, kernel taps, output pixels)

    def two_convs(cin: int, cout: int, level: int) -> None:
        taps = math.prod(r.kernels[level] for r in rules)
        for c in (cin, cout):
            size[:] = [s - (r.kernels[level] - 1) for s, r in zip(size, rules)]
            convs.append((c, cout, taps, math.prod(size)))

    ch, cin = model.base_channels, model.in_channels
    for level in range(depth):
        two_convs(cin, ch * 2**level, level)
        size[:] = [s // r.pools[level] for s, r in zip(size, rules)]
        cin = ch * 2**level
    two_convs(cin, ch * 2**depth, depth)
    cin = ch * 2**depth
    for level in reversed(range(depth)):
        cout = ch * 2**level
        size[:] = [s * r.pools[level] for s, r in zip(size, rules)]
        convs.append((cin, cout, 1, math.prod(size)))  # kernel = stride: each output pixel sees one tap
        two_convs(2 * cout, cout, level)
        cin = cout
    convs.append((cin, model.num_classes, 1, math.prod(size)))
    return batch * model.members * sum(2 * a * b * taps * pixels for a, b, taps, pixels in convs)


def flops_per_output_pixel(model: UNet) -> float:
    """Asymptotic FLOPs per output pixel (voxel) of an infinitely large tile: the cost of the useful work."""
    rules, ch, depth = model.geometry.rules, model.base_channels, model.depth
    total, shrink = 0.0, 1.0  # shrink: output pixels of this level per output pixel of level 0
    for level in range(depth + 1):
        taps = math.prod(r.kernels[level] for r in rules)
        c_out = ch * 2**level
        c_in = model.in_channels if level == 0 else ch * 2 ** (level - 1)
        total += (2 * c_in * c_out * taps + 2 * c_out * c_out * taps) * shrink  # contracting (and bottom)
        if level < depth:
            up_in = ch * 2 ** (level + 1)
            total += (2 * up_in * c_out + 2 * 2 * c_out * c_out * taps + 2 * c_out * c_out * taps) * shrink
            shrink /= math.prod(r.pools[level] for r in rules)
    return model.members * (total + 2 * ch * model.num_classes)
