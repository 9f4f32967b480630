"""Defaults that fit the device and the time budget: what a :class:`TrainConfig` leaves open is chosen here.

A user who gives only the task and a time budget gets a network, tile, batch and learning rate that learn
something useful within that budget on their device; whatever they set themselves wins. The choice is
recorded in the history (``history["settings"]``) and the model file, and shown by the widget and the CLI.

The rules and the figures that chose them are in ``benchmarks/README.md`` (``benchmarks/bench_quality.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from .. import shapes
from ..devices import cpu_has_native_bf16
from ..errors import UNetInputError
from ..presets import NETWORK_PRESETS
from .config import DEFAULT_LEARNING_RATE, TrainConfig
from .network import training_autocast_dtype

#: the name of each autocast dtype of training, as the settings record it
PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}

#: what the paper did, one name away: ``TrainConfig(preset="paper")``
PAPER = {"base_channels": 64, "depth": 4, "dropout": 0.5, "batch_norm": False, "tile_size": 572, "batch_size": 1}

# CPU and MPS: a 16-channel network of depth 4 (92 pixels of context) on tiles with about 228 output pixels a
# side, so that the halo costs less than the prediction; no dropout (it only slows a short training down).
SMALL_DEVICE = {
    "base_channels": 16,
    "depth": 4,
    "dropout": 0.0,
    "batch_norm": False,
    "output_size": 228,
    "batch_size": 1,
}
# CUDA: the paper's network on tiles of the paper's size, as many a batch as fit a quarter of the free memory.
GPU = {"base_channels": 64, "depth": 4, "dropout": 0.0, "batch_norm": False, "output_size": 388}

# 3D on CPU and MPS: every step convolves a volume, so the network and tile are far smaller than in 2D (a
# 16-channel depth-2 network on 48-pixel outputs, z chosen for about the same physical extent). With a time
# budget the same measured rule as 2D picks among BUDGET_CANDIDATES_3D for STEPS_WANTED_3D steps.
SMALL_DEVICE_3D = {**SMALL_DEVICE, "depth": 2, "output_size": 48}
GPU_3D = {**GPU, "base_channels": 32, "depth": 3, "output_size": 96}
BUDGET_CANDIDATES_3D = ((8, 2, 32), (16, 2, 48), (16, 3, 64))
STEPS_WANTED_3D = 1500

AUTOMATIC = ("base_channels", "depth", "dropout", "batch_norm", "tile_size", "batch_size", "members", "learning_rate")

# With a time budget on a CPU or MPS, the network is chosen by measuring a training step of each of these
# (base channels, depth, output pixels a side), smallest first: the largest that still takes STEPS_WANTED steps
# within the budget wins. Many cheap steps beat fewer large ones in the budgets measured (benchmarks/README.md):
# touching discs in 40 s, 16/2 on 64-pixel outputs AP 0.87-0.95 against 0.57 for 16/4 on 228-pixel outputs;
# clustered nuclei in 300 s, 16/2 (10800 steps) AP 0.92 against 0.72 for 16/4 on 132-pixel outputs (2400 steps).
BUDGET_CANDIDATES = ((16, 2, 64), (16, 3, 100), (16, 4, 132), (16, 4, 228))
# 10000, not the 8000 first chosen: on the AMX CPU the probe put 16/4 on 412-pixel tiles at 0.069-0.087 s a whole
# step in 600 s, either side of 8000 steps' 0.075 s, so the choice flipped with the probe's noise; where it took
# the larger tile (about 9300 steps) the ISBI Rand error on the tuning split was 0.249 against 0.202 for 16/4 on
# 316-pixel tiles (14800 steps). 10000 steps keeps 16/4/316 there and changes no other measured choice.
STEPS_WANTED = 10000
# A whole training step (drawing and deforming the tile, the loss, its share of validation) took 1.4-1.6x the
# probe's bare forward, backward and Adam step in the runs measured (discs 16/2: 1.57x; nuclei 16/3: 1.6x;
# ISBI 16/3: 1.41x). Without this factor the rule picked 16/3 for the nuclei in 300 s: 5800 steps, AP 0.73,
# where 16/2 made 14500 steps and AP 0.99 (benchmarks/README.md).
STEP_OVERHEAD = 1.5
# On a CPU with native bf16 (AVX512-BF16, AMX), precision "auto" times each 2D candidate in float32 and under bf16
# autocast, and trains in bf16 where its step takes at most BF16_FASTER of the float32 one. Measured on a 2-core
# AMX Xeon (benchmarks/README.md, "bf16 training on a CPU with AMX"): 16/2/104 0.77x, 16/3/188 0.64x, 16/4/316
# 0.54x of the float32 step; on CPUs without AMX bf16 was no faster for these small networks.
BF16_FASTER = 0.85
# ...unless the network would not see the objects whole: a candidate whose context (``2 * halo``) is narrower
# than the annotated objects (``scale.object_diameter``) gives way to a deeper one that still takes STEPS_FLOOR
# steps. ISBI 2012 slices 0-14 (cells 71 pixels across, area-weighted) at 600 s on a 2-core AVX2
# CPU, scored on slices 15-19: the steps rule alone picked 16/2 (context 40, 17900 steps), pixel error 0.094 and
# Rand error 0.241; 16/3 (context 88, 6900 steps) 0.087 and 0.204 (benchmarks/README.md, "Quality"). Discs (25
# pixels) and nuclei (19) keep 16/2.
STEPS_FLOOR = 2500
# A 2D network the trainer does not time (given by the user, a preset, resumed, or trained for a number of steps)
# trains in bf16 under precision "auto" on a CPU with native bf16 where one forward pass of its training batch
# takes at least this many GFLOP: the plain loop of bench_train_speed.py took, in bf16, this share of its float32
# step (benchmarks/README.md, "Training in bf16 without a budget"). AMD EPYC with AVX512-BF16, no AMX: 16/2 on
# 104-pixel tiles (0.29 GFLOP) 0.91, 16/3 on 188 (1.2) 0.85, 16/4 on 316 (3.8) 0.78, 16/4 on 412 (8.0) 0.69, 32/4
# on 316 (15) 0.83, the paper network on 572 (301) 0.51. AMX Xeon: 16/2/104 0.70-0.77, 16/3/188 0.49-0.64,
# 16/4/316 0.54. A rule on the network, not a timing, so that the same seed and steps give the same run.
BF16_MIN_STEP_GFLOP = 3.0
# With a time budget that buys the chosen 2D network more steps than it learns from, the rest of the budget goes to
# more members (``UNet(members=...)``, an ensemble trained side by side): as many as still take MEMBER_STEPS steps
# each, up to MAX_MEMBERS. ISBI 2012, 16/3 on 188-pixel tiles, tuning split (benchmarks/README.md, "Quality", tenth
# round): the validation IoU stops rising by about step 2200-4000 of a 600 s run of 20000-26000 steps; one network
# for 150 s (5600-6800 steps) scored Rand errors 0.161-0.218, as 600 s did (0.18-0.24); four of them averaged
# 0.172. Trained together for 600 s: 2 members 0.152 (pixel error 0.081), 4 members 0.168 (0.083), against
# 0.203-0.242 for the single network in four runs; 2 keeps the pixel error and costs half the prediction time.
# On the test slices (20-24) the mean Rand error did not move: 0.124 +- 0.009 in four runs, 0.125 +- 0.013 before.
# Semantic tasks only: on the clustered nuclei (instances, 300 s, 16/2/104) 2 members scored AP@0.5 0.960 against
# 0.992 for one network, with 119 of 124 nuclei found: the mean of two members blurs the thin gap that the
# post-processing cuts between touching objects.
MEMBER_STEPS = 5000
MAX_MEMBERS = 2


def resolve(
    config: TrainConfig,
    device: torch.device,
    plane_shapes: Sequence[tuple[int, int]],
    resumed: dict[str, Any] | None = None,
    channels: tuple[int, int] = (1, 2),
    object_diameter: float | None = None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """Fill in what ``config`` leaves open (None) for ``device``.

    Parameters
    ----------
    config : TrainConfig
        As given by the user; explicit values are kept.
    device : torch.device
        The training device.
    plane_shapes : sequence of (int, int)
        The training planes' shapes: the depth is lowered until the smallest plane holds the network's context,
        and tiles are not made larger than the largest plane needs.
    resumed : dict, optional
        The architecture of a model training continues from (``UNet.config()``): it is kept.
    channels : (int, int)
        Input channels and classes of the network (for timing candidate networks).
    object_diameter : float, optional
        The annotated objects' size in pixels (``scale.object_diameter``), used only when the network is chosen
        by timing (``fits_budget_by_timing``): its context should span it.

    Returns
    -------
    config : TrainConfig
        Every architecture and schedule field set.
    settings : dict
        The resolved values, the device, ``"precision"`` (the autocast of training: "fp32", "bf16" or "fp16"),
        and ``"automatic"``: the names chosen here rather than by the user.
    """
    # The device's rule first; a preset (the paper's in full) and a resumed architecture override it.
    three_d = int(config.ndim) == 3
    if three_d:
        rule = GPU_3D if device.type == "cuda" else SMALL_DEVICE_3D
    else:
        rule = GPU if device.type == "cuda" else SMALL_DEVICE
    chosen: dict[str, Any] = {
        k: rule[k] for k in ("base_channels", "depth", "dropout", "batch_norm", "batch_size") if k in rule
    }
    if config.preset is not None:
        if config.preset not in NETWORK_PRESETS:
            raise UNetInputError(f"preset must be one of {sorted(NETWORK_PRESETS)}, got {config.preset!r}.")
        base, depth = NETWORK_PRESETS[config.preset]
        chosen.update(base_channels=base, depth=depth)
        if config.preset == "paper":
            chosen.update(PAPER)
    if resumed:
        chosen.update(
            base_channels=resumed["base_channels"],
            depth=resumed["depth"],
            dropout=resumed["dropout"],
            batch_norm=bool(resumed.get("batch_norm", False)),
        )
    chosen["members"] = int(resumed.get("members", 1)) if resumed else 1
    timings, precision = None, config.precision
    if fits_budget_by_timing(config, device, resumed):
        batch_norm = chosen["batch_norm"] if config.batch_norm is None else config.batch_norm
        (base, depth, tile, precision, seconds), timings = _fastest_network_for_budget(
            config, device, plane_shapes, channels, batch_norm, object_diameter
        )
        chosen.update(base_channels=base, depth=depth, tile_size=tile)
        if int(config.ndim) == 2 and config.task == "semantic":
            chosen["members"] = members_for_budget(float(config.time_budget), seconds)

    values = {name: getattr(config, name) for name in AUTOMATIC}
    automatic = [name for name, value in values.items() if value is None]
    for name in ("base_channels", "depth", "dropout", "batch_norm", "members"):
        if values[name] is None or (resumed and name in ("base_channels", "depth", "batch_norm", "members")):
            values[name] = chosen[name]
    smallest = min(min(s[-2:]) for s in plane_shapes)
    if config.depth is None and not resumed:
        # The context must fit the smallest image (mirroring cannot extrapolate more than the image itself).
        while values["depth"] > 1 and shapes.halo(values["depth"]) > smallest:
            values["depth"] -= 1
    depth = int(values["depth"])
    if values["tile_size"] is None:
        values["tile_size"] = chosen.get("tile_size") or _tile_size(depth, device, plane_shapes, rule["output_size"])
    geometry = network_geometry(config, depth)
    tile_shape = training_tile_shape(geometry, int(values["tile_size"]), config.voxel_size, plane_shapes)
    if values["batch_size"] is None:
        values["batch_size"] = chosen.get("batch_size") or _batch_size(values, device, config, tile_shape)
    if values["learning_rate"] is None:
        values["learning_rate"] = DEFAULT_LEARNING_RATE[config.optimizer]
    geometry.check_input_shape(tile_shape, what="training tile")
    if timings is None and _may_choose_bf16(config, device) and _bf16_pays(values, tile_shape, channels):
        precision = "bf16"
    if precision != config.precision:  # "auto" chose bf16: it trains this network faster on this CPU
        values["precision"] = precision
        automatic.append("precision")
    resolved = dataclasses.replace(config, **values)
    amp = training_autocast_dtype(device, resolved.precision, int(config.ndim))
    settings = {**values, "device": str(device), "automatic": automatic, "precision": PRECISION_NAMES[amp]}
    if three_d:
        settings.update(ndim=3, tile_shape=list(tile_shape), voxel_size=config.voxel_size)
    if timings:
        settings["step_seconds"] = timings
        if object_diameter is not None:
            settings["object_diameter"] = round(float(object_diameter), 1)
    return resolved, settings


def network_geometry(config: TrainConfig, depth: int | None = None) -> shapes.Geometry:
    """The shape arithmetic of the network ``config`` trains (2D, or 3D for its voxel size)."""
    depth = int(config.depth if depth is None else depth)
    if int(config.ndim) == 3 and config.voxel_size is not None:
        return shapes.Geometry(shapes.anisotropic_rules(config.voxel_size, depth))
    return shapes.Geometry.paper(depth, int(config.ndim))


def training_tile_shape(
    geometry: shapes.Geometry, tile: int, voxel_size, plane_shapes: Sequence[tuple[int, ...]]
) -> tuple[int, ...]:
    """The training input tile: ``(tile, tile)`` in 2D; in 3D ``(z, tile, tile)`` with a z output about as long
    physically as the in-plane output, no longer than the largest volume needs."""
    if geometry.ndim == 2:
        return (tile, tile)
    out = geometry.output_shape((geometry.min_input_shape[0], tile, tile))[-1]
    z_spacing, x_spacing = (voxel_size[0], voxel_size[-1]) if voxel_size else (1.0, 1.0)
    z_out = max(1, round(out * x_spacing / z_spacing))
    z_out = min(z_out, max(s[0] for s in plane_shapes))
    z_rule = geometry.rules[0]
    return (z_rule.valid_input_size(z_out + 2 * z_rule.halo, "up"), tile, tile)


def members_for_budget(budget: float, step_seconds: float) -> int:
    """Members for a time budget, given one network's whole step: each must still take ``MEMBER_STEPS`` steps."""
    affordable = budget / max(step_seconds, 1e-9)
    return int(min(MAX_MEMBERS, max(1, affordable // MEMBER_STEPS)))


def fits_budget_by_timing(config: TrainConfig, device: torch.device, resumed) -> bool:
    """Whether the network is the trainer's to choose and the time budget is what ends training."""
    open_network = config.base_channels is None and config.depth is None and config.tile_size is None
    return (
        device.type != "cuda"
        and open_network
        and config.preset is None
        and not resumed
        and config.time_budget is not None
        and config.steps is None
    )


def _fastest_network_for_budget(
    config: TrainConfig,
    device: torch.device,
    plane_shapes: Sequence[tuple[int, int]],
    channels: tuple[int, int],
    batch_norm: bool,
    object_diameter: float | None = None,
) -> tuple[tuple[int, int, int, str, float], dict[str, float]]:
    """The largest candidate whose measured step fits ``STEPS_WANTED`` times into the budget (else the smallest),
    or, while the one chosen does not see ``object_diameter`` pixels whole, a deeper one that fits ``STEPS_FLOOR``
    times: ``(base, depth, tile, precision, seconds of its whole step)`` and the timings. ``precision`` is the
    config's, or "bf16" where "auto" measured it faster (``_may_choose_bf16``, ``BF16_FASTER``)."""
    three_d = int(config.ndim) == 3
    limit = float(config.time_budget) / (STEPS_WANTED_3D if three_d else STEPS_WANTED)
    floor = float(config.time_budget) / STEPS_FLOOR
    smallest = min(min(s[-2:]) for s in plane_shapes)
    largest = max(min(s[-2:]) for s in plane_shapes)

    def too_narrow(depth: int) -> bool:
        return not three_d and object_diameter is not None and 2 * shapes.halo(depth) < object_diameter

    best, timings = None, {}
    time_bf16 = _may_choose_bf16(config, device)
    for base, depth, output in BUDGET_CANDIDATES_3D if three_d else BUDGET_CANDIDATES:
        if shapes.halo(depth) > smallest:
            break  # the context must fit the smallest image
        tile = shapes.input_size_for_output(max(4, min(output, largest)), depth)
        tile_shape = training_tile_shape(network_geometry(config, depth), tile, config.voxel_size, plane_shapes)
        voxel_size = config.voxel_size if three_d else None
        name = f"{base}/{depth}/{tile}"
        precision = config.precision
        seconds = STEP_OVERHEAD * _step_seconds(
            base, depth, tile_shape, channels, device, batch_norm, voxel_size, precision
        )
        timings[name] = round(seconds, 4)
        if time_bf16:
            bf16 = STEP_OVERHEAD * _step_seconds(
                base, depth, tile_shape, channels, device, batch_norm, voxel_size, "bf16"
            )
            timings[f"{name} bf16"] = round(bf16, 4)
            if bf16 <= BF16_FASTER * seconds:
                seconds, precision = bf16, "bf16"
        # Wider context for objects the chosen network does not see whole, at no fewer than STEPS_FLOOR steps.
        widens = best is not None and too_narrow(best[1]) and depth > best[1] and seconds <= floor
        if best is None or seconds <= limit or widens:
            best = (base, depth, tile, precision, seconds)
        if seconds > (floor if too_narrow(best[1]) else limit):
            break
    return best, timings


def _may_choose_bf16(config: TrainConfig, device: torch.device) -> bool:
    """Whether precision "auto" times bf16 too: 2D training on a CPU with native bf16 (3D takes it anyway)."""
    return config.precision == "auto" and device.type == "cpu" and int(config.ndim) == 2 and cpu_has_native_bf16()


def _bf16_pays(values: dict[str, Any], tile_shape: Sequence[int], channels: tuple[int, int]) -> bool:
    """Whether one forward pass of this 2D network's training batch takes ``BF16_MIN_STEP_GFLOP`` or more."""
    from ..model import UNet, forward_flops

    with torch.device("meta"):  # the shape arithmetic only, no weights
        model = UNet(channels[0], channels[1], int(values["base_channels"]), int(values["depth"]))
    flops = forward_flops(model, tuple(tile_shape), int(values["batch_size"]))
    return flops >= BF16_MIN_STEP_GFLOP * 1e9


def _step_seconds(
    base: int,
    depth: int,
    tile_shape: int | tuple[int, ...],
    channels: tuple[int, int],
    device: torch.device,
    batch_norm: bool = False,
    voxel_size: tuple[float, ...] | None = None,
    precision: str = "auto",
) -> float:
    """Seconds of one training step (forward, backward, Adam) of such a network: the best of three steps after two
    that warm up (the first calls of a shape choose and build its convolution kernels)."""
    import time

    from ..model import UNet
    from .network import fused_if_supported

    with torch.random.fork_rng(devices=[]):  # the probe's weights and dropout must not touch the caller's RNG
        tile_shape = (tile_shape, tile_shape) if isinstance(tile_shape, int) else tuple(tile_shape)
        ndim = len(tile_shape)
        model = UNet(channels[0], channels[1], base, depth, batch_norm=batch_norm, ndim=ndim, voxel_size=voxel_size)
        model = model.to(device)
        if device.type == "cpu" and ndim == 2:
            model = model.to(memory_format=torch.channels_last)
        parameters = list(model.parameters())
        optimizer = torch.optim.Adam(parameters, lr=1e-4, **fused_if_supported(parameters))  # as the run's
        x = torch.zeros(1, channels[0], *tile_shape, device=device)
        amp = training_autocast_dtype(device, precision, ndim)  # as the run itself will train
        best = float("inf")
        for i in range(5):
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = model(x).float().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "mps":
                torch.mps.synchronize()
            if i >= 2:
                best = min(best, time.perf_counter() - start)
    return best


def _tile_size(depth: int, device: torch.device, plane_shapes: Sequence[tuple[int, ...]], target: int) -> int:
    """A valid training tile side: about the output size of the device's rule, no more than the largest plane."""
    largest = max(min(s[-2:]) for s in plane_shapes)
    return shapes.input_size_for_output(max(4, min(target, largest)), depth)


def _batch_size(values: dict[str, Any], device: torch.device, config: TrainConfig, tile_shape) -> int:
    """1 on CPU and MPS (one tile already uses every core); on CUDA as many tiles as fit a quarter of the free
    memory, by the inference estimate times four for the activations kept for the backward pass."""
    if device.type != "cuda":
        return 1
    from ..devices import memory_budget
    from ..inference import estimate_tile_memory
    from ..model import UNet

    voxel_size = config.voxel_size if int(config.ndim) == 3 else None
    probe = UNet(1, 2, int(values["base_channels"]), int(values["depth"]), ndim=len(tile_shape), voxel_size=voxel_size)
    per_tile = 4 * estimate_tile_memory(probe, tile_shape) * int(values["members"])  # every member's backward
    return int(max(1, min(16, memory_budget(device) // 2 // max(1, per_tile))))
