"""Kernel time for fresh memory: what each prediction call pays to map new pages for its activations.

Predicts the same image with the same network several times in one process, in the main thread or in a new
thread (as the napari widgets run it), and prints per call the wall time, the CPU time spent in the kernel
(``sys``: mostly page faults and zeroing of newly mapped memory) and the minor page faults. Run it once as is
and once with glibc told to keep freed memory for reuse, to see what fresh memory costs on a machine::

    python benchmarks/bench_fresh_memory.py
    MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python benchmarks/bench_fresh_memory.py

glibc reads these variables only when the process starts (``MALLOC_ARENA_MAX=1`` puts every thread on the main
heap, which is the only one that can hold blocks of hundreds of MB; the two thresholds keep large freed blocks
in the heap instead of returning them to the system). The cost of keeping them: the process holds on to its
peak memory after the call. Results in benchmarks/README.md ("Fresh memory").
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time

import numpy as np


def _calls(model, image, calls: int, axes: str | None) -> list[dict]:
    from napari_seamless_unet import predict

    rows = []
    for _ in range(calls):
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        predict(model, image, axes=axes)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        rows.append(
            {
                "wall": wall,
                "sys": after.ru_stime - before.ru_stime,
                "user": after.ru_utime - before.ru_utime,
                "faults": after.ru_minflt - before.ru_minflt,
                "peak_gib": after.ru_maxrss / 2**20,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels (default 2048)")
    parser.add_argument("--planes", type=int, default=1, help="planes of a z-stack predicted in one call")
    parser.add_argument("--network", default="16/4", help="base channels/depth (default 16/4)")
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--thread", action="store_true", help="predict in a new thread, as napari does")
    args = parser.parse_args(argv)

    import torch

    from napari_seamless_unet import UNet

    base, depth = (int(v) for v in args.network.split("/"))
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=base, depth=depth).eval()
    shape = (args.size, args.size) if args.planes == 1 else (args.planes, args.size, args.size)
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    axes = None if args.planes == 1 else "zyx"
    env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "THP_MEM_ALLOC_ENABLE"}
    print(f"network {args.network}, image {shape}, {'new thread' if args.thread else 'main thread'}, env {env}")

    rows: list[dict] = []
    if args.thread:
        worker = threading.Thread(target=lambda: rows.extend(_calls(model, image, args.calls, axes)))
        worker.start()
        worker.join()
    else:
        rows = _calls(model, image, args.calls, axes)
    print("| call | wall s | sys s | user s | minor faults | peak RSS GiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['wall']:.2f} | {r['sys']:.2f} | {r['user']:.2f} | {r['faults']} | {r['peak_gib']:.2f} |")
    later = rows[1:] or rows
    print(
        f"calls 2-{len(rows)}: wall {min(r['wall'] for r in later):.2f}-{max(r['wall'] for r in later):.2f} s, "
        f"sys {min(r['sys'] for r in later):.2f}-{max(r['sys'] for r in later):.2f} s"
    )


if __name__ == "__main__":
    main()
