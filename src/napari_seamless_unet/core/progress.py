"""The progress protocol shared by the viewer, the command line and tests.

Long computations are generators that ``yield`` :class:`Progress` events and ``return`` their result (napari's
generator thread workers deliver the two as ``yielded`` and ``returned``). :func:`run` drives such a generator
synchronously for scripts, feeding a progress callback or a tqdm-like object and honouring a stop request; when
a computation of at least ``RELEASE_AFTER_SECONDS`` returns, the thread's idle OpenMP workers are handed back
(:mod:`.openmp`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from .errors import Cancelled
from .openmp import release_openmp_threads

_nesting = threading.local()  # run() calls in progress in this thread (training validates through run())

# Ending a thread's OpenMP team and starting the next one cost 1-2 ms (a 128² prediction of a tiny network: 8-10 ms
# a call, 1-2 ms more with the release); a computation shorter than this keeps its team.
RELEASE_AFTER_SECONDS = 0.1


class Progress(NamedTuple):
    """``done`` of ``total`` units (tiles, steps) of the ``stage`` finished; ``info`` carries extras (loss...)."""

    done: int
    total: int
    stage: str = ""
    info: dict | None = None


ProgressLike = Callable[[int, int], Any] | Any


def as_callback(progress: ProgressLike | None) -> Callable[[Progress], None]:
    """Turn ``None``, a ``callback(done, total)`` or a tqdm-like object (``.update``, ``.total``) into one callable."""
    if progress is None:
        return lambda event: None
    if hasattr(progress, "update") and hasattr(progress, "total"):
        last = {"n": 0}

        def update_bar(event: Progress) -> None:
            if progress.total != event.total:
                progress.total = event.total
                if hasattr(progress, "refresh"):
                    progress.refresh()
            if event.done < last["n"]:  # a new stage restarts the count
                last["n"] = 0
                if hasattr(progress, "reset"):
                    progress.reset(total=event.total)
            progress.update(event.done - last["n"])
            last["n"] = event.done

        return update_bar
    if callable(progress):
        return lambda event: progress(event.done, event.total)
    raise TypeError(f"progress must be a callable(done, total) or a tqdm-like object, got {type(progress).__name__}")


def run(
    generator: Generator[Progress, None, Any],
    progress: ProgressLike | None = None,
    should_stop: Callable[[], bool] | None = None,
    partial: Callable[[], Any] | None = None,
) -> Any:
    """Drive a progress generator to completion and return its result.

    If ``should_stop()`` becomes true the generator is closed (so it can keep what it finished) and
    :class:`Cancelled` is raised, carrying ``partial()`` when given. A KeyboardInterrupt raised while the
    progress is reported (between two steps) is passed into the generator, so that it can finish cleanly:
    training saves and returns its model, prediction re-raises it.
    """
    callback = as_callback(progress)
    _nesting.depth = getattr(_nesting, "depth", 0) + 1
    started = time.perf_counter()
    try:
        event = next(generator)
        while True:
            try:
                callback(event)
            except KeyboardInterrupt:
                event = generator.throw(KeyboardInterrupt())
                continue
            if should_stop is not None and should_stop():
                generator.close()
                raise Cancelled("stopped on request", partial=partial() if partial else None)
            event = next(generator)
    except StopIteration as stop:
        return stop.value
    finally:
        _nesting.depth -= 1
        # the computation is over: its OpenMP workers must not slow other threads
        if _nesting.depth == 0 and time.perf_counter() - started >= RELEASE_AFTER_SECONDS:
            release_openmp_threads()
