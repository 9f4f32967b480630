"""Running ``predict`` and ``segment`` on dask.distributed: the options, the cluster and computing with progress.

``--workers N`` starts a :class:`distributed.LocalCluster` of N worker processes on this machine,
``--scheduler ADDRESS`` connects to a cluster that runs already (e.g. ``dask scheduler`` and ``dask worker`` on
other machines); either makes the command build lazy dask results (``predict_dask``/``segment_dask``) and compute
the blocks of every input together on the workers. ``distributed`` is optional: it is imported only here, and
only when one of these options is given, so ``--help`` stays fast and the single-process path needs nothing more.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence

from ..core.errors import UNetInputError
from ._common import ProgressBar, block_size, positive_int

MISSING = '--workers needs dask.distributed: pip install "napari-seamless-unet[distributed]"'


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--threads-per-worker``, ``--memory-limit``, ``--scheduler`` and ``--chunk-size``."""
    group = parser.add_argument_group(
        "dask.distributed (needs the [distributed] extra)",
        "With --workers or --scheduler the image is cut into output blocks that worker processes predict in "
        "parallel, all inputs together; without them the command runs in this process.",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="start a local dask cluster of N worker processes (default: none, run in this process)",
    )
    group.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=None,
        metavar="N",
        help="blocks each worker process runs at once, with --workers (default: 1)",
    )
    group.add_argument(
        "--memory-limit",
        default=None,
        metavar="BYTES",
        help="memory of each worker process in dask's format, e.g. 4GB, 500MiB, or 0.5 (of this machine's "
        "memory), with --workers (default: auto = the machine's memory shared among the workers)",
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the existing dask cluster whose scheduler is at ADDRESS, e.g. tcp://host:8786 (not with "
        "--workers; default: none)",
    )
    group.add_argument(
        "--chunk-size",
        type=block_size,
        default=None,
        metavar="SIZE",
        help="output block size of one dask task, e.g. 1024 or 1024x2048 (Y x X), or 16x512x512 (Z x Y x X) for "
        "a 3D model; only with --workers or --scheduler (default: the core's choice)",
    )


def uses_dask(args: argparse.Namespace) -> bool:
    """Whether the options ask for the dask path; refuses options that do not go together."""
    if args.workers is not None and args.scheduler is not None:
        raise UNetInputError("--workers and --scheduler exclude each other: start a local cluster or use one.")
    if args.workers is None:
        given = [name for name in ("threads_per_worker", "memory_limit") if getattr(args, name) is not None]
        if given:
            option = "--" + given[0].replace("_", "-")
            raise UNetInputError(f"{option} sets up the workers of --workers N; give --workers too.")
    dask = args.workers is not None or args.scheduler is not None
    if args.chunk_size is not None and not dask:
        raise UNetInputError("--chunk-size is the block size of the dask path: give --workers N or --scheduler too.")
    return dask


def _memory_limit(text: str | None):
    """``auto``, a fraction of the machine's memory (a number up to 1) or a byte count in dask's format."""
    if text is None or text.strip().lower() == "auto":
        return "auto"
    from dask.utils import parse_bytes

    with contextlib.suppress(ValueError):
        fraction = float(text)
        if 0 < fraction <= 1:
            return fraction
    try:
        limit = parse_bytes(text)
    except (ValueError, TypeError):
        limit = None
    if not limit or limit < 1:
        raise UNetInputError(
            f"--memory-limit {text!r}: expected a size like 4GB or 500MiB, a fraction like 0.5, or auto."
        )
    return limit


@contextlib.contextmanager
def cluster(args: argparse.Namespace) -> Iterator:
    """The :class:`distributed.Client` that ``args`` ask for, current while the block runs.

    Starts a :class:`distributed.LocalCluster` for ``--workers`` (closed again on the way out) or connects to
    ``--scheduler`` (only the connection is closed); prints the dashboard's address unless ``--quiet``.
    """
    try:
        import distributed
    except ImportError:
        raise UNetInputError(MISSING) from None
    with contextlib.ExitStack() as stack:
        if args.scheduler is not None:
            try:
                # waits as long as distributed.comm.timeouts.connect says (30 s)
                client = distributed.Client(args.scheduler, set_as_default=True)
            except (OSError, TimeoutError, ValueError) as err:
                message = " ".join(str(err).split())
                raise UNetInputError(f"cannot reach the dask scheduler at {args.scheduler!r}: {message}") from None
        else:
            # distributed sets OMP_NUM_THREADS=1 and others in this process's environment for its workers;
            # give the process its own back when the cluster is closed
            stack.callback(_restore_environment, dict(os.environ))
            local = distributed.LocalCluster(
                n_workers=args.workers,
                processes=True,
                threads_per_worker=args.threads_per_worker or 1,
                memory_limit=_memory_limit(args.memory_limit),
                # a failed block is logged by its worker (many lines) and raised here: the error stays one line
                silence_logs=logging.CRITICAL,
            )
            stack.enter_context(local)
            client = distributed.Client(local, set_as_default=True)
        stack.enter_context(client)
        if not args.quiet:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        yield client


def _restore_environment(saved: dict) -> None:
    os.environ.clear()
    os.environ.update(saved)


def compute_blocks(
    client, collections: Sequence, done: Callable[[int, object], None], *, quiet: bool = False, desc: str = ""
) -> None:
    """Compute the dask ``collections`` together on ``client``'s workers, block by block.

    Every block is a future; a progress bar counts the blocks done (of all collections). When the last block of
    collection ``i`` is done, ``done(i, persisted)`` is called with its persisted collection (all its blocks in
    worker memory, e.g. to gather a result for a TIFF), then it is released. An error in a block is raised here
    (an input error as the :class:`UNetInputError` it was).
    """
    import distributed

    persisted = client.persist(list(collections))
    keys = [{future.key for future in distributed.futures_of(item)} for item in persisted]
    futures = {future.key: future for item in persisted for future in distributed.futures_of(item)}
    owners: dict = {}  # key -> the collections it belongs to (equal inputs may share their blocks)
    for i, group in enumerate(keys):
        for key in group:
            owners.setdefault(key, []).append(i)
    left = [len(group) for group in keys]
    try:
        with ProgressBar(quiet, desc=desc, unit="block") as bar:
            bar.total = len(futures)
            for i, count in enumerate(left):
                if count == 0:  # nothing to compute
                    done(i, persisted[i])
            for future in distributed.as_completed(list(futures.values())):
                if future.status == "error":
                    _raise(future, distributed.KilledWorker)
                bar.update(1)
                for i in owners.pop(future.key):
                    left[i] -= 1
                    if left[i] == 0:
                        done(i, persisted[i])
                        persisted[i] = None  # its blocks may leave the workers' memory
                futures.pop(future.key)
    except BaseException:
        client.cancel(list(futures.values()))
        raise


def _raise(future, killed: type) -> None:
    """Raise the exception of a failed block (an input error as it was); workers that died say what may help."""
    try:
        future.result()
    except killed:
        raise UNetInputError(
            "dask workers died computing a block (out of memory?): give each worker more memory (--memory-limit), "
            "use fewer workers or threads, or smaller blocks (--chunk-size)."
        ) from None
