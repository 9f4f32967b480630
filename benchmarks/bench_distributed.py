"""Scale-out: prediction of a large zarr image on 1 and 2 dask.distributed workers against the single process.

A ``--size`` x ``--size`` (default 8192x8192) uint16 zarr image (1024² chunks) is predicted into a zarr array of
float32 probabilities three ways, each timed from the start of the computation to the last block written:

- **single process**: :func:`napari_seamless_unet.predict` with ``out=`` the zarr array (the CLI's path without
  ``--workers``), in a child process so that its peak resident memory is its own;
- **N workers** (``--workers``, default 1 and 2): a ``LocalCluster(n_workers=N, threads_per_worker=1)`` and
  ``dask.array.store(predict_dask(model, path), out)`` (what ``seamless-unet predict --workers N`` runs). dask
  starts its workers with ``OMP_NUM_THREADS=1``, so each worker runs torch on one core: N workers use N cores,
  the single process uses all of them.

Printed: megapixels (of output) per second, wall time, the blocks and their halo cost, and the peak resident
memory of each process (the workers' from ``resource.getrusage`` inside them). With ``--check`` the results are
compared (they must be equal to float tolerance). Random weights: the speed does not depend on them.

Examples::

    python benchmarks/bench_distributed.py                     # the issue's run: 8192x8192, small network
    python benchmarks/bench_distributed.py --size 2048 --check # a quick look, results compared
    python benchmarks/bench_distributed.py --segment           # segment_dask of an instance model instead
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_model(channels: int, depth: int, task: str, path: Path) -> Path:
    import torch

    from napari_seamless_unet import UNet, save_model

    torch.manual_seed(0)
    save_model(UNet(1, 2, base_channels=channels, depth=depth, task=task), path)
    return path


def make_image(path: Path, size: int) -> None:
    import zarr

    image = zarr.open(str(path), mode="w", shape=(size, size), chunks=(1024, 1024), dtype="u2")
    rng = np.random.default_rng(0)
    for y in range(0, size, 1024):
        image[y : y + 1024] = rng.integers(0, 4000, (min(1024, size - y), size), dtype=np.uint16)


def output_array(path: Path, model, size: int, segment: bool):
    import zarr

    from napari_seamless_unet.core.predict import output_dtype, output_layout

    output = "labels" if segment else "probabilities"
    shape, _ = output_layout(model, (size, size), "YX", output)
    chunks = (1024, 1024) if segment else (shape[0], 1024, 1024)
    return zarr.open(str(path), mode="w", shape=shape, chunks=chunks, dtype=output_dtype(model, output))


def single(model_path: Path, image_path: Path, out_path: Path, segment: bool) -> dict:
    """The child process's job: predict (or segment) into the zarr output; wall time and peak RSS."""
    import zarr

    from napari_seamless_unet import load_model
    from napari_seamless_unet import predict as predict_image
    from napari_seamless_unet import segment as segment_image

    model = load_model(model_path, device="cpu")
    image = zarr.open(str(image_path), mode="r")
    out = output_array(out_path, model, image.shape[0], segment)
    start = time.perf_counter()
    (segment_image if segment else predict_image)(model, image, out=out, device="cpu")
    return {"wall": time.perf_counter() - start, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _warm_up() -> None:
    import napari_seamless_unet.core.dask_blocks  # noqa: F401  (torch and the network's code)


def _peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def on_workers(model_path: Path, image_path: Path, out_path: Path, workers: int, segment: bool, chunks) -> dict:
    import dask.array as da
    from distributed import Client, LocalCluster

    from napari_seamless_unet import load_model, predict_dask, segment_dask

    model = load_model(model_path, device="cpu")
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_up)  # workers up, torch imported, before the clock starts
        lazy = (segment_dask if segment else predict_dask)(model, str(image_path), chunks=chunks, device="cpu")
        out = output_array(out_path, model, lazy.shape[-1], segment)
        start = time.perf_counter()
        da.store(lazy, out, lock=False)
        wall = time.perf_counter() - start
        rss = client.run(_peak_rss)
        return {"wall": wall, "rss_workers": sorted(rss.values()), "blocks": int(np.prod(lazy.numblocks))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--channels", type=int, default=16, help="base channels of the network (default 16)")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--chunks", type=int, default=None, help="output block size (default: predict_dask's)")
    parser.add_argument("--segment", action="store_true", help="segment_dask of an instance model (global labels)")
    parser.add_argument("--check", action="store_true", help="compare the outputs with the single process's")
    parser.add_argument("--single-job", nargs=4, help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    if args.single_job:
        model_path, image_path, out_path, segment = args.single_job
        print(json.dumps(single(Path(model_path), Path(image_path), Path(out_path), segment == "1")))
        return 0

    from napari_seamless_unet import load_model
    from napari_seamless_unet.core.dask_predict import default_chunks

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        task = "instances" if args.segment else "semantic"
        model_path = make_model(args.channels, args.depth, task, tmp / "model.unet.pt")
        model = load_model(model_path, device="cpu")
        image_path = tmp / "image.zarr"
        make_image(image_path, args.size)
        block = args.chunks or default_chunks(model, (args.size, args.size))[0]
        tile = model.geometry.input_shape_for_output((block, block))[0]
        print(
            f"{args.size}x{args.size} uint16 zarr, network base {args.channels} depth {args.depth} ({task}); "
            f"blocks of {block}² output, tiles of {tile}² ({tile**2 / block**2:.2f} input pixels read per output "
            f"pixel), {math.ceil(args.size / block) ** 2} blocks"
        )
        megapixels = args.size**2 / 1e6
        rows = []
        child = subprocess.run(
            [sys.executable, __file__, "--single-job", str(model_path), str(image_path), str(tmp / "single.zarr"),
             "1" if args.segment else "0"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(("single process", result["wall"], f"{result['rss']:.2f}"))
        outputs = {}
        for n in [int(w) for w in args.workers.split(",") if w]:
            out_path = tmp / f"workers{n}.zarr"
            result = on_workers(model_path, image_path, out_path, n, args.segment, args.chunks)
            rows.append(
                (
                    f"{n} worker{'s' if n > 1 else ''}",
                    result["wall"],
                    ", ".join(f"{r:.2f}" for r in result["rss_workers"]),
                )
            )
            outputs[n] = out_path
        print("\n| run | wall | MP/s | peak RSS (GiB) per process |\n| --- | --- | --- | --- |")
        for name, wall, rss in rows:
            print(f"| {name} | {wall:.1f} s | {megapixels / wall:.2f} | {rss} |")
        if args.check:
            import zarr

            expected = np.asarray(zarr.open(str(tmp / "single.zarr"), mode="r"))
            for n, path in outputs.items():
                got = np.asarray(zarr.open(str(path), mode="r"))
                if args.segment:
                    same = np.array_equal(got > 0, expected > 0)
                    print(f"{n} workers: same foreground as the single process: {same}")
                else:
                    print(f"{n} workers: largest difference to the single process {np.abs(got - expected).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
