"""3D segmentation: a 3D U-Net against a 2D U-Net with plane linking, and 3D prediction throughput.

Both networks train with the defaults for the same time budget on one synthetic volume of touching, anisotropic
nuclei (``core.synthetic.touching_nuclei_3d``, z spacing ``--spacing`` times the in-plane spacing), and are
tested on a second volume (another seed):

- **3D**: ``TrainConfig(task="instances", ndim=3, voxel_size=(z, 1, 1), time_budget=B)``, then
  :func:`napari_seamless_unet.segment` (objects labelled in 3D);
- **2D + linking**: ``TrainConfig(task="instances", time_budget=B)`` on every plane of the same volume, then
  ``segment(..., link_planes=True)`` (each plane's objects take the id of the object they overlap in the plane
  before).

Scores are AP@0.5 of the 3D objects (``core.metrics.match_instances``: a predicted object matches a true one
when their IoU in 3D is above 0.5; AP = matched / (predicted + true - matched)) and the IoU of the foregrounds.

The throughput part predicts a ``--volume`` (default 256x1024x1024) float32 zarr volume with the trained 3D model
(:func:`napari_seamless_unet.predict` into a zarr array, tiles chosen for the device) in a child process and
prints voxels per second and the child's peak resident memory.

Examples::

    python benchmarks/bench_3d.py                              # the issue's run: 300 s each, CPU, throughput
    python benchmarks/bench_3d.py --budget 60 --no-throughput  # a quick look
    python benchmarks/bench_3d.py --only 3d --seed 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def volumes(shape, spacing: float, train_seed: int, test_seed: int):
    from napari_seamless_unet.core.synthetic import touching_nuclei_3d

    train = touching_nuclei_3d(shape, spacing=(spacing, 1.0, 1.0), seed=train_seed)
    test = touching_nuclei_3d(shape, spacing=(spacing, 1.0, 1.0), seed=test_seed)
    return train, test


def run(kind: str, train, test, spacing: float, budget: float, device: str, save: Path | None, overrides=None) -> dict:
    from napari_seamless_unet import TrainConfig, segment
    from napari_seamless_unet import train as train_model
    from napari_seamless_unet.core.metrics import match_instances

    image, labels = train
    options = {"task": "instances", "time_budget": budget, "device": device, "axes": "ZYX"}
    if kind == "3d":
        options.update(ndim=3, voxel_size=(spacing, 1.0, 1.0))
    if save is not None:
        options["save_path"] = str(save)
    options.update(overrides or {})
    started = time.perf_counter()
    result = train_model([image], [labels], config=TrainConfig(**options))
    trained = time.perf_counter() - started
    started = time.perf_counter()
    found = segment(result.model, test[0], axes="ZYX", device=device, link_planes=kind == "2d")
    segmented = time.perf_counter() - started
    scores = match_instances(found, test[1])
    settings = result.settings
    return {
        "kind": kind,
        "ap50": scores["matched"] / max(1, scores["predicted"] + scores["true"] - scores["matched"]),
        "scores": scores,
        "objects_found": int(len(np.unique(found)) - 1),
        "objects_true": int(len(np.unique(test[1])) - 1),
        "steps": int(result.history["step"][-1]) if result.history["step"] else 0,
        "network": f"{settings.get('base_channels')}/{settings.get('depth')}",
        "tile": settings.get("tile_shape") or [settings.get("tile_size")] * 2,
        "train_seconds": round(trained, 1),
        "segment_seconds": round(segmented, 1),
        "val_ap50": [round(v, 3) for v in result.history.get("val_ap50") or [] if v is not None],
    }


def throughput(model_path: Path, shape, device: str) -> dict:
    """In this process: predict a zarr volume of ``shape`` into a zarr array; voxels per second."""
    import zarr

    from napari_seamless_unet import load_model, predict
    from napari_seamless_unet.core.synthetic import touching_nuclei_3d

    model = load_model(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        block = touching_nuclei_3d((32, 256, 256), spacing=tuple(model.voxel_size or (1, 1, 1)), seed=7)[0]
        source = zarr.open(f"{tmp}/in.zarr", mode="w", shape=shape, chunks=(32, 256, 256), dtype="float32")
        for z in range(0, shape[0], 32):
            for y in range(0, shape[1], 256):
                for x in range(0, shape[2], 256):
                    part = source[z : z + 32, y : y + 256, x : x + 256]
                    source[z : z + 32, y : y + 256, x : x + 256] = block[
                        : part.shape[0], : part.shape[1], : part.shape[2]
                    ]
        out = zarr.open(
            f"{tmp}/out.zarr", mode="w", shape=(model.num_classes, *shape), chunks=(1, 32, 256, 256), dtype="float32"
        )
        started = time.perf_counter()
        predict(model, source, axes="ZYX", device=device, out=out)
        seconds = time.perf_counter() - started
    voxels = int(np.prod(shape))
    return {
        "volume": list(shape),
        "seconds": round(seconds, 1),
        "voxels_per_second": voxels / seconds,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds of each network")
    parser.add_argument("--shape", default="32,256,256", help="Z,Y,X of the training and test volumes")
    parser.add_argument("--spacing", type=float, default=3.0, help="z spacing over the in-plane spacing")
    parser.add_argument("--seed", type=int, default=0, help="training volume seed (the test volume: seed + 100)")
    parser.add_argument("--only", choices=("3d", "2d"), help="train only one of the two")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--volume", default="256,1024,1024", help="Z,Y,X of the throughput volume")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--throughput-model", help=argparse.SUPPRESS)  # the child process's job
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a TrainConfig value for both runs (repeatable)"
    )
    args = parser.parse_args(argv)
    volume = tuple(int(v) for v in args.volume.split(","))
    if args.throughput_model:
        print(json.dumps(throughput(Path(args.throughput_model), volume, args.device)))
        return

    shape = tuple(int(v) for v in args.shape.split(","))
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    train, test = volumes(shape, args.spacing, args.seed, args.seed + 100)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "3d.unet.pt"
        for kind in ("3d", "2d"):
            if args.only and kind != args.only:
                continue
            save = model_path if kind == "3d" else None
            results.append(run(kind, train, test, args.spacing, args.budget, args.device, save, overrides))
            r = results[-1]
            print(
                f"{kind:>3}: AP@0.5 {r['ap50']:.3f}, foreground IoU {r['scores']['foreground_iou']:.3f}, "
                f"{r['objects_found']} objects found of {r['objects_true']}, network {r['network']}, tile {r['tile']}, "
                f"{r['steps']} steps in {r['train_seconds']} s, segmented in {r['segment_seconds']} s",
                flush=True,
            )
        if not args.no_throughput and (args.only in (None, "3d")):
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--throughput-model",
                    str(model_path),
                    "--volume",
                    args.volume,
                    "--device",
                    args.device,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            t = json.loads(child.stdout.strip().splitlines()[-1])
            results.append({"kind": "throughput", **t})
            print(
                f"3D prediction of a {'x'.join(map(str, t['volume']))} zarr volume: {t['seconds']} s, "
                f"{t['voxels_per_second'] / 1e6:.2f} M voxels/s, peak memory {t['peak_rss_gib']:.2f} GiB"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
