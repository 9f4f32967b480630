"""Train on ISBI 2012 (neuronal membranes) for a fixed time and score the validation slices.

Cells (label 255) are the objects, found as connected components; membranes (0) are background, so the task
is "instances" with the paper's weight map. Slices 0-19 train, 20-24 validate. Prints pixel error,
foreground-restricted Rand error (``core.metrics.rand_error``), foreground IoU, steps/s, the share
of step time spent preparing data, and the weight-map timing for a 512x512 image with 200 objects.

Example (CPU, small network)::

    python benchmarks/bench_train_isbi.py --base-channels 8 --depth 3 --time-budget 120 --device cpu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from napari_seamless_unet.core.metrics import iou_per_class, rand_error
from napari_seamless_unet.core.predict import segment
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.train import TrainConfig, train
from napari_seamless_unet.core.weights import instance_weight_map, separate_touching

REPO = Path(__file__).resolve().parents[1]


def weight_map_timing(repeats: int = 5) -> tuple[float, int]:
    """Median seconds for the weight map of a 512x512 image with about 200 touching objects."""
    _, labels = touching_discs((512, 512), n_objects=200, radius=(6, 12), seed=1)
    objects = separate_touching(labels)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        instance_weight_map(objects)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), int(labels.max())


def load(data: Path):
    import tifffile

    volume = tifffile.imread(data / "train-volume.tif")
    membranes = tifffile.imread(data / "train-labels.tif")
    cells = np.stack([ndimage.label(m == 255)[0] for m in membranes]).astype(np.int32)
    return volume, cells


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "isbi2012"))
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--time-budget", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    wm_seconds, n_objects = weight_map_timing()
    print(f"weight map 512x512, {n_objects} objects: {wm_seconds * 1000:.1f} ms")

    volume, cells = load(Path(args.data))
    train_idx, val_idx = range(20), range(20, min(25, len(volume)))
    config = TrainConfig(
        task="instances",
        base_channels=args.base_channels,
        depth=args.depth,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        steps=10**9,
        time_budget=args.time_budget,
        val_every=10**9,
        device=args.device,
        seed=args.seed,
    )
    val_subset = list(val_idx)[:1]  # one slice scored during training (at the end), all five below
    started = time.perf_counter()
    model, history = train(
        [volume[i] for i in train_idx],
        [cells[i] for i in train_idx],
        config=config,
        validation=([volume[i] for i in val_subset], [cells[i] for i in val_subset]),
    )
    train_seconds = time.perf_counter() - started

    pixel_errors, rand_errors, ious = [], [], []
    for i in val_idx:
        pred = segment(model, volume[i], device=args.device)
        truth_fg = cells[i] > 0
        pixel_errors.append(float(np.mean((pred > 0) != truth_fg)))
        ious.append(float(iou_per_class(pred > 0, truth_fg, 2)[1]))
        # The challenge's foreground-restricted Rand error: only pixels inside true cells count.
        rand_errors.append(rand_error(cells[i], pred)["error"])
    result = {
        "optimizer": args.optimizer,
        "learning_rate": history["learning_rate"],
        "base_channels": args.base_channels,
        "depth": args.depth,
        "tile_size": history["tile_size"],
        "batch_size": args.batch_size,
        "device": history["device"],
        "steps": len(history["step"]),
        "train_seconds": round(train_seconds, 1),
        "steps_per_second": round(history.get("steps_per_second", 0.0), 3),
        "data_time_fraction": round(history.get("data_time_fraction", 0.0), 4),
        "final_loss": float(np.mean(history["loss"][-20:])) if history["loss"] else None,
        "pixel_error": round(float(np.mean(pixel_errors)), 4),
        "rand_error": round(float(np.mean(rand_errors)), 4),
        "foreground_iou": round(float(np.mean(ious)), 4),
        "weight_map_ms_512_200": round(wm_seconds * 1000, 1),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
