"""Training in a worker thread after torch work in another thread: the cost of idle OpenMP teams.

napari runs training in a worker thread. On Linux, torch's OpenMP runtime (libgomp) keeps an idle team of
worker threads for every thread that has run torch work; with more such threads than CPUs it stops spinning at
its barriers, and every small parallel region of a step then waits for sleeping workers to wake. The package
hands a thread's team back when a computation ends (``core.openmp.release_openmp_threads``). This script times a
training step (the slope between a 10- and a ``--steps``-step run, 16 channels, depth 4, 316-pixel tiles, ISBI
slices or synthetic discs) in the main thread, then the same in a new thread, each case in a fresh process:

- ``release``: as shipped;
- ``keep``: the release switched off (the behaviour before), so the main thread's idle team stays;
- ``pool``: a thread that trained and stays alive (a Qt pool thread waiting for its next job) beside the new
  thread, as shipped; ``pool-keep``: the same with the release switched off;
- ``napari``: the new thread is a napari thread worker started as the widgets start theirs
  (``plugin._common.start_worker``, Qt's global thread pool; needs a display or ``QT_QPA_PLATFORM=offscreen``);
  ``napari-keep``: the same with the release switched off.

Examples::

    python benchmarks/bench_threads.py                       # 3 processes per case
    python benchmarks/bench_threads.py --repeats 5 --precision fp32
    QT_QPA_PLATFORM=offscreen python benchmarks/bench_threads.py --cases napari,napari-keep
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time


def _data():
    import numpy as np

    from bench_quality import ISBI, isbi_data  # this script's folder is on sys.path, as for bench_active_learning

    if (ISBI / "train-volume.tif").exists():
        (images, labels), _ = isbi_data(ISBI)
        return images[:6], labels[:6]
    from napari_seamless_unet.core.synthetic import touching_discs

    pairs = [touching_discs((512, 512), n_objects=60, seed=s) for s in range(3)]
    return [p[0] for p in pairs], [(p[1] > 0).astype(np.int32) for p in pairs]


def _train_seconds(images, labels, steps: int, precision: str) -> float:
    from napari_seamless_unet import TrainConfig, train

    config = TrainConfig(
        task="semantic", steps=steps, base_channels=16, depth=4, tile_size=316, seed=0, val_every=10**6,
        precision=precision,
    )  # fmt: skip
    started = time.perf_counter()
    train(images, labels, config=config)
    return time.perf_counter() - started


def _ms_per_step(images, labels, steps: int, precision: str) -> float:
    short = _train_seconds(images, labels, 10, precision)
    return (_train_seconds(images, labels, steps, precision) - short) / (steps - 10) * 1e3


def _in_thread(function):
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=function()))
    thread.start()
    thread.join()
    return out["value"]


def _in_napari_worker(function):
    """Run ``function`` as a viewer job does: a generator in a napari thread worker on Qt's global pool."""
    from qtpy.QtWidgets import QApplication

    from napari_seamless_unet.plugin._common import start_worker

    app = QApplication.instance() or QApplication([])
    out = {}

    def job():
        yield 0
        out["value"] = function()
        return out["value"]

    start_worker(job, yielded=lambda _: None, returned=lambda _: app.quit(), errored=print, finished=app.quit)
    app.exec_()
    return out["value"]


def child(case: str, steps: int, precision: str) -> dict:
    """One process: a step in the main thread, then in a new thread (``case`` as in the module docstring)."""
    if case.endswith("keep"):
        from napari_seamless_unet.core import progress

        progress.release_openmp_threads = lambda: False
        if case.startswith("napari"):
            from napari_seamless_unet.plugin import _common

            _common.release_openmp_threads = lambda: False
    images, labels = _data()
    _train_seconds(images, labels, 10, precision)  # the process's first steps build kernels: not timed
    result = {"main_ms": _ms_per_step(images, labels, steps, precision)}
    if case.startswith("napari"):
        result["thread_ms"] = _in_napari_worker(lambda: _ms_per_step(images, labels, steps, precision))
        return result
    if case.startswith("pool"):
        done, gate = threading.Event(), threading.Event()

        def pool_thread():
            try:
                _train_seconds(images, labels, 10, precision)
            finally:
                done.set()
            gate.wait()  # alive and idle, like a Qt pool thread between jobs

        keeper = threading.Thread(target=pool_thread)
        keeper.start()
        done.wait()
    result["thread_ms"] = _in_thread(lambda: _ms_per_step(images, labels, steps, precision))
    if case.startswith("pool"):
        gate.set()
        keeper.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case")
    parser.add_argument("--steps", type=int, default=110)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--cases", default="release,keep,pool,pool-keep")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.precision)))
        return
    import torch

    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, precision {args.precision}")
    rows = {case: [] for case in args.cases.split(",")}
    for _ in range(args.repeats):  # cases interleaved, so that the machine's drift hits each alike
        for case in rows:
            command = [sys.executable, __file__, "--child", case, "--steps", str(args.steps), "--precision"]
            out = subprocess.run([*command, args.precision], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr)
            rows[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| case | main thread ms/step | new thread ms/step | new / main (median) | runs (new / main) |")
    print("| --- | --- | --- | --- | --- |")
    for case, runs in rows.items():
        ratios = [r["thread_ms"] / r["main_ms"] for r in runs]
        main_ms = statistics.median(r["main_ms"] for r in runs)
        thread_ms = statistics.median(r["thread_ms"] for r in runs)
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"| {case} | {main_ms:.1f} | {thread_ms:.1f} | **{statistics.median(ratios):.2f}** | {each} |")


if __name__ == "__main__":
    main()
