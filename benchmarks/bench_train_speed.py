"""Training throughput: our training step against a plain PyTorch loop on the same network and tile (issue 19).

For each network (``channels/depth/output pixels``; ``paper`` = 64/4 on the paper's 572-pixel tile) this prints:

- **ours**: milliseconds per step of the real training step (``_Session.train_step``: drawing and deforming the
  tile, the weighted loss, backward, the finite-gradient check and the optimizer), steps per second and input
  megapixels per second;
- **train()**: the same from a whole ``train()`` run with a time budget (validation, progress and history
  included; its clock starts after the weight maps);
- a **breakdown** of one step: data (sampling, elastic deformation, grey values, memory layout, host to device),
  forward+loss+backward, optimizer (with the finite check), measured apart on the same session;
- **plain**: a PyTorch loop that only does forward, cross-entropy, backward and Adam on one fixed tensor, in
  the same precision and memory layout (the limit), with torch's default Adam as such a loop is written, with
  Adam's fused kernel (which our training uses), and, where the device runs bf16 natively, in the other precision
  (bf16 autocast for a float32 run, float32 for a bf16 one), so that the precision chosen can be checked.

The contenders run in interleaved blocks of ``--steps`` steps, ``--repeats`` times, and each keeps its best
block: noise on a shared or virtual machine only ever adds time.

Data: the ISBI 2012 slices of ``../shared/data/isbi2012`` (semantic: membrane and cell) when present, else
synthetic touching discs. Figures go to ``benchmarks/README.md`` ("Training throughput").

Examples::

    python benchmarks/bench_train_speed.py
    python benchmarks/bench_train_speed.py --networks 16/4/228,paper --steps 30
    python benchmarks/bench_train_speed.py --device cuda --networks paper --steps 200
    python benchmarks/bench_train_speed.py --precision bf16   # ours and the plain loops under bf16 autocast
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_seamless_unet import TrainConfig, UNet, train
from napari_seamless_unet.core.devices import cpu_has_native_bf16, resolve_device
from napari_seamless_unet.core.train.loop import _Session
from napari_seamless_unet.core.train.loss import weighted_loss
from napari_seamless_unet.core.train.network import gradients_finite
from napari_seamless_unet.core.train.prepare import prepare

REPO = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_data(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    if (folder / "train-volume.tif").exists():
        import tifffile

        volume = tifffile.imread(folder / "train-volume.tif")[:20]
        membranes = tifffile.imread(folder / "train-labels.tif")[:20]
        return list(volume), [(m == 255).astype(np.uint8) for m in membranes], "ISBI 2012 slices 0-19"
    from napari_seamless_unet.core.synthetic import touching_discs

    pairs = [touching_discs((512, 512), n_objects=150, seed=s) for s in range(4)]
    return [p[0] for p in pairs], [(p[1] > 0).astype(np.uint8) for p in pairs], "synthetic discs (no ISBI data)"


def parse_network(spec: str) -> dict:
    if spec == "paper":
        return {"base_channels": 64, "depth": 4, "tile_size": 572, "dropout": 0.5}
    channels, depth, output = (int(v) for v in spec.split("/"))
    tile = UNet(base_channels=1, depth=depth).geometry.input_shape_for_output((output, output))[0]
    return {"base_channels": channels, "depth": depth, "tile_size": int(tile), "dropout": 0.0}


def make_config(net: dict, device: torch.device, steps: int, precision: str = "auto") -> TrainConfig:
    return TrainConfig(
        task="semantic",
        precision=precision,
        steps=steps,
        device=str(device),
        save_path=None,
        batch_size=1,
        seed=0,
        val_every=10**9,  # validation is counted in the train() figure, not in the per-step ones
        **net,
    )


def time_block(step, steps: int, device: torch.device) -> float:
    """Seconds per call of ``step`` over ``steps`` calls (after the caller's warm-up)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def breakdown(session: _Session, steps: int) -> dict[str, float]:
    """Seconds per step in data, forward+loss+backward and optimizer, on the session's own batches and model."""
    model, optimizer, precision, dev = session.model, session.optimizer, session.precision, session.device
    totals = {"data": 0.0, "forward_backward": 0.0, "optimizer": 0.0}
    for _ in range(steps):
        t0 = time.perf_counter()
        image, target, weight = session.draw_batch()
        sync(dev)
        t1 = time.perf_counter()
        with session.randomness.active():
            with precision.autocast(dev):
                logits = model(image)
            loss = weighted_loss(logits, target, weight)
            for parameter in session.parameters:  # as the real step clears them
                parameter.grad = None
            loss.backward()
            sync(dev)
            t2 = time.perf_counter()
            gradients_finite(session.parameters)
            optimizer.step()
            sync(dev)
        t3 = time.perf_counter()
        totals["data"] += t1 - t0
        totals["forward_backward"] += t2 - t1
        totals["optimizer"] += t3 - t2
    return {k: v / steps for k, v in totals.items()}


def plain_step(net: dict, in_shape: tuple[int, ...], device: torch.device, dtype, fused: bool = False):
    """One step of forward, cross-entropy, backward and Adam on one fixed tensor: the limit.

    ``fused=False`` is Adam as a plain loop writes it (torch's default update, one operation per tensor on a CPU);
    ``fused=True`` its fused kernel, which our training uses where torch has one."""
    torch.manual_seed(0)
    model = UNet(1, 2, net["base_channels"], net["depth"], net["dropout"]).to(device)
    channels_last = device.type in ("cpu", "cuda")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(1, 1, *in_shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = model.output_shape(in_shape)
    y = torch.randint(0, 2, (1, *out), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))

    def step():
        ctx = (
            torch.autocast(device.type, dtype=dtype)
            if dtype is not None
            else torch.autocast(device.type, enabled=False)
        )
        with ctx:
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def train_run(images, labels, net: dict, device: torch.device, seconds: float, precision: str) -> tuple[float, int]:
    """Seconds per step of a whole train() run with a time budget (automatic validation, history, progress),
    from its clock (which starts after the weight maps): what a user's run gets."""
    config = dataclasses.replace(make_config(net, device, 10**7, precision), val_every=None, time_budget=seconds)
    history = train(images, labels, config=config).history
    steps = history["step"][-1]
    return history["elapsed_seconds"] / steps, steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "isbi2012"))
    parser.add_argument("--networks", default="16/2/64,16/3/100,16/4/228,paper")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement (paper: a quarter)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved blocks of each; the best is kept")
    parser.add_argument("--train-seconds", type=float, default=30.0, help="budget of the train() run (0: none)")
    parser.add_argument(
        "--precision", default="auto", help="TrainConfig(precision=) of ours and of the plain loops (bf16: both bf16)"
    )
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    images, labels, what = load_data(Path(args.data))
    native_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, data: {what}, "
        f"native bf16: {native_bf16}"
    )
    for spec in args.networks.split(","):
        net = parse_network(spec)
        steps = max(4, args.steps // 4) if spec == "paper" else args.steps
        warmup = max(2, args.warmup // 2) if spec == "paper" else args.warmup
        config = make_config(net, device, 10**6, args.precision)
        session = _Session(prepare(images, labels, config, None, None, None), None)
        session.model.train()
        tile_shape = session.data.tile_shape
        contenders = {
            "ours": session.train_step,
            "plain": plain_step(net, tile_shape, device, session.precision.amp_dtype),
            "plain, fused Adam": plain_step(net, tile_shape, device, session.precision.amp_dtype, fused=True),
        }
        amp = session.precision.amp_dtype
        other = None  # the other precision's plain loop, where bf16 is native: was the precision worth it?
        if native_bf16 and amp is None:
            other = "plain bf16"
            contenders[other] = plain_step(net, tile_shape, device, torch.bfloat16)
        elif native_bf16 and amp == torch.bfloat16:
            other = "plain fp32"
            contenders[other] = plain_step(net, tile_shape, device, None)
        for step in contenders.values():
            for _ in range(warmup):
                step()
        # Interleaved blocks, best of the repeats: on a shared or virtual machine noise only ever adds time, and
        # alternating keeps a slow spell from falling on one contender only.
        times = {name: float("inf") for name in contenders}
        for _ in range(args.repeats):
            for name, step in contenders.items():
                times[name] = min(times[name], time_block(step, steps, device))
        parts = breakdown(session, steps)
        ours, plain, plain_fused = times["ours"], times["plain"], times["plain, fused Adam"]
        other_time = times.get(other)
        megapixels = np.prod(tile_shape) / 1e6
        name = f"{spec} (tile {tile_shape[-1]}, {'bf16' if amp == torch.bfloat16 else 'fp32'})"
        print(
            f"[{name}] ours {ours * 1e3:.1f} ms/step ({1 / ours:.1f} steps/s, {megapixels / ours:.2f} input MP/s); "
            f"plain {plain * 1e3:.1f} ms/step -> ours / plain = {ours / plain:.3f}; plain with fused Adam "
            f"{plain_fused * 1e3:.1f} ms/step -> ours / that = {ours / plain_fused:.3f}"
            + (f"; {other} {other_time * 1e3:.1f} ms/step (plain / that = {plain / other_time:.3f})" if other else "")
        )
        total = sum(parts.values())
        print(
            f"[{name}] breakdown: data {parts['data'] * 1e3:.1f} ms ({parts['data'] / total:.1%}), "
            f"forward+loss+backward {parts['forward_backward'] * 1e3:.1f} ms, optimizer "
            f"{parts['optimizer'] * 1e3:.1f} ms"
        )
        if args.train_seconds > 0:
            seconds = args.train_seconds * (4 if spec == "paper" else 1)
            per_step, done = train_run(images, labels, net, device, seconds, args.precision)
            print(
                f"[{name}] train(): {per_step * 1e3:.1f} ms/step ({done} steps in {seconds:g} s, automatic "
                f"validation included) -> train() / plain = {per_step / plain:.3f}"
            )


if __name__ == "__main__":
    main()
