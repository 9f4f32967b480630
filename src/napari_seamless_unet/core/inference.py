"""Running the network on batches of tiles: memory estimates, the tile choice, the device runner, out-of-memory.

The runner never changes the caller's network: it runs a copy moved to the prediction device (and to
channels-last where that is faster), so a model keeps its device, dtype, memory format, mode and parameters,
and torch's global flags are set only for the duration of one forward pass.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from .devices import autocast_dtype, cudnn_autotune, is_out_of_memory, memory_budget, resolve_device
from .errors import InvalidShapeError
from .fused import fuse_for_cpu_inference
from .model import UNet, forward_flops
from .tiling import TileGrid


# -- memory and tile choice -----------------------------------------------------------------------------------
def estimate_tile_memory(model: UNet, tile_shape: Sequence[int], batch_size: int = 1) -> int:
    """Upper estimate of the bytes one forward pass needs in inference mode (float32 activations).

    In inference mode only the skip connections and a few maps of the current level are alive at once; the
    largest moment is the first expanding level, where the skip, the up-convolution, their concatenation and
    the convolution output coexist. A 3D network's convolutions through 2D ones (``layers.Conv3d``) hold their
    input three times over as well.
    """
    rules = model.geometry.rules
    size = [int(s) for s in tile_shape]
    ch = model.base_channels
    total = model.in_channels * math.prod(size)
    largest = 0
    stacked = 3 if model.ndim == 3 else 0
    for level in range(model.depth):
        size = [s - 2 * (r.kernels[level] - 1) for s, r in zip(size, rules)]
        pixels = math.prod(size)
        total += ch * 2**level * pixels  # skip kept for the expanding path
        largest = max(largest, (2 + stacked) * ch * 2**level * pixels)
        size = [s // r.pools[level] for s, r in zip(size, rules)]
    # first expanding level (level 0): up-convolution, concatenation and two convs on about the skip's size
    out = model.geometry.output_shape(tile_shape)
    level0 = ch * math.prod(o + 2 * (r.kernels[0] - 1) for o, r in zip(out, rules))
    largest = max(largest, (4 + 2 * stacked) * level0)
    return int(4 * batch_size * (total + largest) * 1.15)


def choose_tile_shape(
    model: UNet,
    image_shape: Sequence[int],
    device: str | torch.device | None = None,
    memory_budget_bytes: int | None = None,
) -> tuple[int, ...]:
    """The input tile shape with the least halo waste that fits the memory budget.

    Tiles are never larger than needed to cover the image: an image (or volume) is split into the fewest tiles
    per axis that fit, and the tiles are then shrunk to just cover it.
    """
    dev = resolve_device(device)
    budget = memory_budget(dev) if memory_budget_bytes is None else int(memory_budget_bytes)
    geometry = model.geometry
    size = [int(s) for s in image_shape]
    longest = max(size)
    best = None
    for n in range(1, 1 << 16):
        # Split the longer axes first; keep tiles roughly cubic for the least halo per output pixel.
        counts = [max(1, math.ceil(s / max(1, math.ceil(longest / n)))) for s in size]
        stride = tuple(step * math.ceil(s / c / step) for s, c, step in zip(size, counts, geometry.step))
        best = geometry.input_shape_for_output(stride)
        if estimate_tile_memory(model, best) <= budget or all(s <= step for s, step in zip(stride, geometry.step)):
            break
    return best  # type: ignore[return-value]


# -- running the network on a batch of tiles -------------------------------------------------------------------
#: the 8 symmetries of the square: quarter turns, each without and with a mirror
DIHEDRAL = tuple((k, flip) for k in range(4) for flip in (False, True))


class TileRunner:
    """Runs a copy of the network on normalised tile batches on one device, with autocast and channels-last
    (and, for a 2D network on a CPU, each convolution's ReLU fused into it: :mod:`.fused`).

    Parameters
    ----------
    model : UNet
        The network; it is copied, never moved or converted.
    device : torch.device
        Where the copy runs.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision (see :func:`~napari_seamless_unet.core.devices.autocast_dtype`).
    tile_shape : (int, int), optional
        The tile the ``auto`` precision is chosen for.
    tta : bool
        Test-time augmentation: average the probabilities of the 8 flips and 90-degree rotations of each tile
        (8 forward passes). The valid-convolution network is exactly equivariant to them, so tiles still stitch
        seamlessly; the paper averaged rotated versions of the input for its ISBI 2012 result.
    view_entropy : bool
        With ``tta``: one more channel after the mean probabilities, the mean over the 8 views of each view's
        entropy divided by ``log(num_classes)`` (what the views' disagreement is measured against).
    """

    def __init__(
        self,
        model: UNet,
        device: torch.device,
        precision: str = "auto",
        tile_shape=None,
        tta: bool = False,
        view_entropy: bool = False,
    ):
        self.model = model
        self.device = device
        self.precision = precision
        self.tta = bool(tta)
        self.view_entropy = bool(view_entropy)
        if self.view_entropy and not self.tta:
            raise ValueError("view_entropy needs tta=True")
        gflop = forward_flops(model, tile_shape) / 1e9 if tile_shape else None
        self.dtype = autocast_dtype(device, precision, gflop)
        # Channels-last lets oneDNN (CPU) and cuDNN (CUDA) pick their fastest convolution kernels: 1.7x on the
        # paper network on a 2-core AVX-512 CPU (benchmarks/README.md).
        self.channels_last = device.type in ("cuda", "cpu") and model.ndim == 2
        self.network = _device_copy(model, device, self.channels_last)
        if device.type == "cpu" and model.ndim == 2:
            self.network = fuse_for_cpu_inference(self.network)

    def __call__(self, batch: np.ndarray, output: str) -> np.ndarray:
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        else:
            tensor = tensor.to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast, cudnn_autotune(self.device):
            if self.tta:
                views = (self._transformed_probabilities(tensor, k, flip) for k, flip in DIHEDRAL)
                if self.view_entropy:
                    scores, entropies = 0.0, 0.0
                    for p in views:
                        scores = scores + p
                        entropies = entropies - (p * torch.log(p.clamp_min(1e-12))).sum(dim=1, keepdim=True)
                    scale = len(DIHEDRAL) * math.log(self.model.num_classes)
                    scores = torch.cat([scores / len(DIHEDRAL), entropies / scale], dim=1)
                else:
                    scores = sum(views) / len(DIHEDRAL)
            else:
                scores = self.network(tensor).float()  # logits: same argmax, softmax only when asked for
            if output == "labels":
                result = scores.argmax(dim=1).to(torch.uint8 if self.model.num_classes <= 255 else torch.int32)
            else:
                result = scores if self.tta else torch.softmax(scores, dim=1)
        return result.cpu().numpy()

    def _transformed_probabilities(self, tensor: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
        """Probabilities of the tile flipped and rotated by ``k`` quarter turns, turned back to the tile's frame."""
        x = tensor.flip(-1) if flip else tensor
        x = torch.rot90(x, k, dims=(-2, -1))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        p = torch.softmax(self.network(x).float(), dim=1)
        p = torch.rot90(p, -k, dims=(-2, -1))
        return p.flip(-1) if flip else p


def _device_copy(model: UNet, device: torch.device, channels_last: bool) -> UNet:
    """An eval-mode float32 copy of ``model`` on ``device``; ``model`` itself is left exactly as it is."""
    with torch.no_grad():
        clone = copy.deepcopy(model).to(device=device, dtype=torch.float32)
    if channels_last:
        clone = clone.to(memory_format=torch.channels_last)
    return clone.eval().requires_grad_(False)


def predict_tiles(
    model: UNet,
    tiles: np.ndarray,
    *,
    device=None,
    precision: str = "auto",
    output: str = "probabilities",
    tta: bool = False,
) -> np.ndarray:
    """Run the network on a batch of already normalised, mirror-padded input tiles ``(B, C, H, W)`` (or
    ``(B, C, D, H, W)`` for a 3D network).

    This is the per-tile step; a block-wise engine (dask ``map_overlap`` with ``depth=halo`` and
    ``boundary="reflect"``) can call it on blocks whose cores are multiples of ``2**depth``.
    Returns ``(B, num_classes, *out)`` probabilities or ``(B, *out)`` class ids.
    """
    tiles = np.ascontiguousarray(tiles, dtype=np.float32)
    if tiles.ndim != model.ndim + 2 or tiles.shape[1] != model.in_channels:
        space = "height, width" if model.ndim == 2 else "depth, height, width"
        raise InvalidShapeError(f"tiles must be (batch, {model.in_channels}, {space}), got {tiles.shape}")
    model.geometry.check_input_shape(tiles.shape[2:])
    return TileRunner(model, resolve_device(device), precision, tuple(tiles.shape[2:]), tta)(tiles, output)


# -- out of memory ---------------------------------------------------------------------------------------------
def shrink_after_oom(model: UNet, grid: TileGrid, batch: int, runner: TileRunner, err: BaseException):
    """After an out-of-memory error: a smaller batch, then smaller tiles, then the CPU, with a warning each time.

    Returns ``(grid, batch, runner)`` to go on with, or raises ``err`` when nothing smaller is left. Smaller
    tiles give the same result: tiles stitch exactly whatever their size.
    """
    if not is_out_of_memory(err):
        raise err
    if runner.device.type == "cuda":
        torch.cuda.empty_cache()
    if batch > 1:
        warnings.warn(f"out of memory with {batch} tiles a batch; retrying with {batch // 2}", stacklevel=3)
        return grid, batch // 2, runner
    smaller = tuple(max(step, (s // 2) // step * step) for s, step in zip(grid.stride, model.geometry.step))
    if smaller != grid.stride:
        smaller_grid = TileGrid.for_stride(grid.image_shape, smaller, model.geometry)
        warnings.warn(
            f"out of memory with tiles of {grid.tile_shape}; retrying with tiles of {smaller_grid.tile_shape}",
            stacklevel=3,
        )
        return smaller_grid, 1, runner
    if runner.device.type != "cpu":
        warnings.warn(
            f"out of memory on {runner.device} even with the smallest tiles; continuing on the CPU", stacklevel=3
        )
        cpu = torch.device("cpu")
        return grid, 1, TileRunner(model, cpu, runner.precision, grid.tile_shape, runner.tta, runner.view_entropy)
    raise err
