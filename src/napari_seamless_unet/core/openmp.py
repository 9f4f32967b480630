"""Handing back a thread's idle OpenMP workers when its torch work is done.

On Linux torch runs its CPU kernels in OpenMP teams of GNU libgomp, and every thread that has run torch work keeps
its team's worker threads for its next parallel region. Once libgomp manages more threads than there are CPUs, it
stops spinning at its barriers ("throttled" spin count, a compile-time limit that no environment variable lifts):
each worker then sleeps and is woken for every one of the thousands of small parallel regions of a training step.
So a job in napari's worker thread ran 1.2-2.4x slower whenever another thread (the main thread after a
``predict`` typed in the console, or a pool thread of an earlier job, which Qt keeps for 30 s) still held an idle
team (``benchmarks/README.md``, "Training in a worker thread"). libgomp's ``omp_pause_resource_all`` (OpenMP 5.0)
ends the calling thread's team; the next parallel region in that thread starts a new one (ending and starting
one cost 1-2 ms in all). :func:`release_openmp_threads` is called when a synchronous computation of at least
0.1 s (:func:`~napari_seamless_unet.core.progress.run`) or a viewer job ends.

Other OpenMP runtimes (LLVM's libomp on macOS, Microsoft's on Windows) pause the whole runtime rather than the
caller's team, or have no such call, so there this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

_OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: stop the threads, keep nothing that would survive a hard pause

_pause_functions: list[Callable[[int], int]] | None = None


def _find_pause_functions() -> list[Callable[[int], int]] | None:
    """``omp_pause_resource_all`` of every libgomp loaded in this process; None while torch is not imported yet."""
    if "torch" not in sys.modules:
        return None  # torch loads its libgomp at import: look again later
    functions = []
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line}
    except OSError:
        return []
    for path in sorted(paths):
        if not os.path.basename(path).startswith("libgomp"):
            continue
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all  # the loaded library: same handle, no second copy
        except (OSError, AttributeError):  # a libgomp older than OpenMP 5.0 (GCC 9)
            continue
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        functions.append(pause)
    return functions


def release_openmp_threads() -> bool:
    """End the calling thread's idle OpenMP team (libgomp on Linux), so that it slows no other thread's torch work.

    Safe to call at any time from any thread: only the caller's own team is ended, and never while the caller is
    inside a parallel region. Does nothing on other platforms or OpenMP runtimes.

    Returns
    -------
    bool
        True when a libgomp team was released (or there was none to release).
    """
    global _pause_functions
    if not sys.platform.startswith("linux"):
        return False
    if _pause_functions is None:
        _pause_functions = _find_pause_functions()
        if _pause_functions is None:
            return False
    released = False
    for pause in _pause_functions:
        released |= pause(_OMP_PAUSE_SOFT) == 0
    return released
