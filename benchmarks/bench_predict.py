"""Prediction benchmark: throughput, FLOP efficiency, halo waste, MONAI comparison, precision, memory.

Prints, for a square image (2048x2048 by default) and each network (the paper's, base 64 depth 4, and a small
one), on one device:

- megapixels per second of whole-image prediction with the automatic tile choice;
- executed GFLOP/s and its ratio to a large torch matrix product measured in the same run, same precision;
- the fraction of executed FLOPs that land in the output (the rest is halo and over-coverage);
- the share of wall time spent outside the network's forward pass (reading, normalising, stitching);
- the speed ratio against MONAI's ``sliding_window_inference`` (roi 512, overlap 0.25, gaussian blending)
  running a padded U-Net of the same width and depth (``--monai``);
- bf16 / fp16 autocast agreement with fp32 on the labels of a trained model and the speed-up (``--precision``);
- peak resident memory while segmenting a huge zarr image into a zarr output (``--memory``, in a subprocess).

Examples::

    python benchmarks/bench_predict.py --size 2048 --monai --precision
    python benchmarks/bench_predict.py --device cuda --size 8192 --monai --precision
    python benchmarks/bench_predict.py --memory --memory-size 20000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from napari_seamless_unet import UNet, predict, segment
from napari_seamless_unet.core.devices import autocast_dtype, memory_budget, resolve_device
from napari_seamless_unet.core.model import flops_per_output_pixel, forward_flops
from napari_seamless_unet.core.predict import choose_tile_shape
from napari_seamless_unet.core.tiling import TileGrid

NETWORKS = {
    "paper": {"base_channels": 64, "depth": 4},
    "medium": {"base_channels": 32, "depth": 4},
    "small": {"base_channels": 16, "depth": 4},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype | None, n: int | None = None, seconds: float = 3.0) -> float:
    """Throughput of a large square matrix product, the machine's practical limit for dense work.

    4096 a side on a CPU; 8192 on a GPU, where 4096 is too small to reach the tensor cores' rate.
    """
    n = n or (8192 if device.type == "cuda" else 4096)
    real = dtype or torch.float32
    a = torch.randn(n, n, device=device).to(real)
    b = torch.randn(n, n, device=device).to(real)
    a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


class ForwardTimer:
    """Adds up the time spent inside the network's forward pass, through forward hooks.

    Hooks, not a replaced ``model.forward``: prediction runs a deep copy of the network (channels-last, on the
    device), and a replaced ``forward`` would be copied as a closure that still calls the original network's
    forward, timing (and running) the wrong network. Hooks are copied with the module and call this timer.
    """

    def __init__(self, model: nn.Module, device: torch.device):
        self.seconds, self.calls, self.device = 0.0, 0, device
        self._started = 0.0

        def before(module, args):
            sync(self.device)
            self._started = time.perf_counter()

        def after(module, args, output):
            sync(self.device)
            self.seconds += time.perf_counter() - self._started
            self.calls += 1

        self._handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def bench_unet(name, model, image, device, precision, repeats):
    h, w = image.shape
    tile = choose_tile_shape(model, (h, w), device)
    grid = TileGrid.for_tile_shape((h, w), tile, model.depth)
    executed = len(grid) * forward_flops(model, tile)
    useful = flops_per_output_pixel(model) * h * w
    predict(model, image[: tile[0], : tile[1]], device=device, precision=precision)  # warm-up (kernels, caches)

    def timed() -> float:
        start = time.perf_counter()
        predict(model, image, tile_shape=tile, device=device, precision=precision)
        sync(device)
        return time.perf_counter() - start

    # Throughput without the timer: its synchronisations would stop a GPU overlapping copies with compute.
    wall = min(timed() for _ in range(repeats))
    # The share outside the forward pass from one more run with the timer (on a GPU an upper bound, for that reason).
    timer = ForwardTimer(model, device)
    hooked = timed()
    timer.remove()
    return {
        "network": name,
        "tile": tile,
        "tiles": len(grid),
        "wall_s": wall,
        "megapixels_per_s": h * w / wall / 1e6,
        "executed_gflops": executed / 1e9,
        "executed_gflop_per_s": executed / wall / 1e9,
        "useful_fraction": useful / executed,
        "outside_forward_fraction": 1 - timer.seconds / hooked,
    }


def compare_fuse(name, model, image, precision, repeats):
    """Whole predictions with and without the fused ReLUs (core/fused.py), alternating, in one process."""
    from napari_seamless_unet.core import fused

    available = fused.fused_relu_available
    times = {"plain": [], "fused": []}
    try:
        for _ in range(repeats):
            for variant in times:
                fused.fused_relu_available = available if variant == "fused" else (lambda: False)
                start = time.perf_counter()
                predict(model, image, precision=precision)
                times[variant].append(time.perf_counter() - start)
    finally:
        fused.fused_relu_available = available
    plain, fast = min(times["plain"]), min(times["fused"])
    print(f"[{name}] fused ReLUs: plain {plain:.2f} s, fused {fast:.2f} s (best of {repeats}): {plain / fast:.2f}x")


# -- the standard tool: a padded U-Net and MONAI's sliding window with gaussian blending ---------------------------
class PaddedUNet(nn.Module):
    """The same widths and depth as :class:`UNet`, with 'same' (padded) convolutions, as most libraries ship it."""

    def __init__(self, base_channels=64, depth=4, in_channels=1, num_classes=2):
        super().__init__()

        def block(i, o):
            return nn.Sequential(
                nn.Conv2d(i, o, 3, padding=1), nn.ReLU(True), nn.Conv2d(o, o, 3, padding=1), nn.ReLU(True)
            )

        ch = [base_channels * 2**k for k in range(depth + 1)]
        self.down = nn.ModuleList([block(in_channels if k == 0 else ch[k - 1], ch[k]) for k in range(depth)])
        self.bottom = block(ch[depth - 1], ch[depth])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(ch[k + 1], ch[k], 2, stride=2) for k in reversed(range(depth))])
        self.convs = nn.ModuleList([block(2 * ch[k], ch[k]) for k in reversed(range(depth))])
        self.head = nn.Conv2d(ch[0], num_classes, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        skips = []
        for b in self.down:
            x = b(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, conv, skip in zip(self.ups, self.convs, reversed(skips)):
            x = conv(torch.cat([skip, up(x)], 1))
        return self.head(x)


def bench_monai(name, spec, image, device, dtype, repeats):
    """MONAI's sliding window with a padded U-Net, in the same autocast ``dtype`` as our run (None = fp32)."""
    from monai.inferers import sliding_window_inference

    net = PaddedUNet(**spec).to(device).eval().to(memory_format=torch.channels_last)
    tensor = torch.from_numpy(image)[None, None]

    def run():
        ctx = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
        with torch.inference_mode(), ctx:
            x = tensor.to(device)
            logits = sliding_window_inference(
                x, roi_size=(512, 512), sw_batch_size=4, predictor=net, overlap=0.25, mode="gaussian"
            )
            return torch.softmax(logits.float(), 1).cpu()

    run_small = torch.from_numpy(image[:512, :512])[None, None].to(device)
    with torch.inference_mode():
        net(run_small.contiguous(memory_format=torch.channels_last))  # warm-up
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync(device)
        wall = time.perf_counter() - start
        best = wall if best is None else min(best, wall)
    h, w = image.shape
    return {"network": name, "wall_s": best, "megapixels_per_s": h * w / best / 1e6}


# -- precision: labels of a trained model under autocast vs fp32 ------------------------------------------------------
def trained_model(path: str | None, seconds: float, device: torch.device) -> UNet:
    from napari_seamless_unet import load_model

    if path:
        return load_model(path)
    from napari_seamless_unet import TrainConfig, train
    from napari_seamless_unet.core.synthetic import touching_discs

    images, labels = zip(*(touching_discs((384, 384), n_objects=120, seed=s) for s in range(4)))
    config = TrainConfig(
        task="instances",
        base_channels=16,
        depth=3,
        steps=100000,
        time_budget=seconds,
        device=str(device),
        save_path=None,
        val_every=10**9,
    )
    return train(list(images), list(labels), config=config).model


def bench_precision(model, device, size, repeats):
    from napari_seamless_unet.core.synthetic import touching_discs

    image, _ = touching_discs((size, size), n_objects=size * size // 900, seed=123)
    results = {}
    reference = None
    for precision in ("fp32", "bf16") + (("fp16",) if device.type == "cuda" else ()):
        segment(model, image[:256, :256], device=device, precision=precision)
        best = None
        for _ in range(repeats):
            start = time.perf_counter()
            probabilities = predict(model, image, device=device, precision=precision)
            wall = time.perf_counter() - start
            best = wall if best is None else min(best, wall)
        labels = probabilities.argmax(0)
        if reference is None:
            reference = (labels, best)
        results[precision] = {
            "wall_s": best,
            "speedup_vs_fp32": reference[1] / best,
            "label_agreement": float(np.mean(labels == reference[0])),
        }
    return results


# -- memory: a huge zarr image into a zarr output -----------------------------------------------------------------
def memory_child(size: int, chunk: int, workdir: str) -> None:
    import zarr

    src = zarr.open_array(
        os.path.join(workdir, "image.zarr"), mode="w", shape=(size, size), chunks=(chunk, chunk), dtype="u1"
    )
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:chunk, 0:chunk]
    for y in range(0, size, chunk):  # fill chunk by chunk so that the image never sits in memory
        for x in range(0, size, chunk):
            block = 127 + 100 * np.sin((yy + y) / 17.0) * np.cos((xx + x) / 23.0) + rng.normal(0, 10, yy.shape)
            src[y : y + chunk, x : x + chunk] = np.clip(block, 0, 255).astype("u1")[: size - y, : size - x]
    torch.manual_seed(0)
    model = UNet(base_channels=8, depth=3).eval()
    out = zarr.open_array(
        os.path.join(workdir, "labels.zarr"), mode="w", shape=(size, size), chunks=(chunk, chunk), dtype="u1"
    )
    start = time.perf_counter()
    segment(model, src, out=out, tile_shape=(1148, 1148))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"size": size, "wall_s": wall, "peak_rss_bytes": peak}))


def bench_memory(size: int) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(size), "--workdir", workdir],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels (default 2048)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--networks", default="paper,small", help="comma-separated: paper, small")
    parser.add_argument(
        "--dtype", default="fp32", choices=["fp32", "bf16", "fp16", "auto"], help="precision for speed runs"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-fuse", action="store_true", help="run the CPU network without its fused ReLUs")
    parser.add_argument(
        "--compare-fuse", action="store_true", help="time each network with and without fused ReLUs, alternating"
    )
    parser.add_argument("--monai", action="store_true", help="compare with MONAI sliding_window_inference")
    parser.add_argument("--precision", action="store_true", help="bf16/fp16 agreement with fp32 on a trained model")
    parser.add_argument("--model", default=None, help="trained model for --precision (default: train one briefly)")
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument("--memory", action="store_true", help="peak memory for a huge zarr image (subprocess)")
    parser.add_argument("--memory-size", type=int, default=20000)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.no_fuse:
        from napari_seamless_unet.core import fused

        fused.fused_relu_available = lambda: False
    if args.memory_child:
        memory_child(args.memory_child, 1024, args.workdir)
        return

    device = resolve_device(args.device)
    print(
        f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else os.cpu_count()} "
        f"{'GPU' if device.type == 'cuda' else 'CPU cores'}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"precision {args.dtype}, memory budget {memory_budget(device) / 2**30:.1f} GiB"
    )
    image = np.random.default_rng(0).random((args.size, args.size)).astype(np.float32)
    peaks = {}
    for name in args.networks.split(","):
        torch.manual_seed(0)
        model = UNet(**NETWORKS[name]).eval()
        tile = choose_tile_shape(model, (args.size, args.size), device)
        dtype = autocast_dtype(device, args.dtype, forward_flops(model, tile) / 1e9)
        if dtype not in peaks:  # the machine's limit in the precision this network runs in
            peaks[dtype] = matmul_gflops(device, dtype)
            print(f"matmul ({dtype or torch.float32}): {peaks[dtype]:.1f} GFLOP/s")
        peak = peaks[dtype]
        if args.compare_fuse:
            compare_fuse(name, model, image, args.dtype, max(3, args.repeats))
        r = bench_unet(name, model, image, device, args.dtype, args.repeats)
        print(
            f"[{name}] seamless-unet {args.size}x{args.size}: tile {r['tile']} x{r['tiles']}, {r['wall_s']:.2f} s, "
            f"{r['megapixels_per_s']:.3f} MP/s, {r['executed_gflop_per_s']:.1f} GFLOP/s executed "
            f"({r['executed_gflop_per_s'] / peak:.2f} of matmul), useful FLOP fraction {r['useful_fraction']:.3f}, "
            f"time outside forward {r['outside_forward_fraction']:.3f}"
        )
        if args.monai:
            m = bench_monai(name, NETWORKS[name], image, device, dtype, args.repeats)
            print(
                f"[{name}] MONAI sliding window (roi 512, overlap 0.25, gaussian), padded U-Net, same precision: "
                f"{m['wall_s']:.2f} s, "
                f"{m['megapixels_per_s']:.3f} MP/s -> seamless-unet is {r['megapixels_per_s'] / m['megapixels_per_s']:.2f}x"
            )
    if args.precision:
        model = trained_model(args.model, args.train_seconds, device)
        for precision, r in bench_precision(model, device, min(args.size, 2048), args.repeats).items():
            print(
                f"[precision] {precision}: {r['wall_s']:.2f} s, speed-up {r['speedup_vs_fp32']:.2f}x, "
                f"label agreement with fp32 {r['label_agreement'] * 100:.3f}%"
            )
    if args.memory:
        m = bench_memory(args.memory_size)
        print(
            f"[memory] {m['size']}x{m['size']} uint8 zarr -> zarr labels, small network (base 8, depth 3): "
            f"{m['wall_s']:.1f} s, peak RSS {m['peak_rss_bytes'] / 2**30:.2f} GiB"
        )


if __name__ == "__main__":
    main()
