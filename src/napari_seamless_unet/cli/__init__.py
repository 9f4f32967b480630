"""The ``seamless-unet`` command line: ``train``, ``predict``, ``segment``, ``postprocess``, ``uncertainty``, ``info``,
``export`` and ``demo``.

Built only on the public compute core and :mod:`napari_seamless_unet.io` (no napari, no Qt); each command is
one module (:mod:`.train`, :mod:`.predict` for predict and segment, :mod:`.postprocess` for instance labels
from saved probabilities, :mod:`.uncertainty` for the map of where a model is unsure and the regions to annotate
next, :mod:`.info`, :mod:`.export`, :mod:`.demo`) with
``add_parser(subparsers)`` and ``run(args) -> int``, importing torch only when it runs, so that ``--help``
starts at once. Images are read with tifffile (memory-mapped or as a lazy zarr view where the file allows it)
or zarr, so a large input is read tile by tile; predictions into a ``.zarr`` path are written tile by tile.

Every error a user can cause ends the program with one line on stderr (``seamless-unet: error: ...``) and a
non-zero exit status; Ctrl-C during training saves the model so far and exits with status 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..core.errors import UNetInputError
from . import demo, export, info, postprocess, predict, train, uncertainty
from ._common import EXIT_INTERRUPTED, PROG, Parser, fail

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``seamless-unet`` (exposed for documentation tools)."""
    parser = Parser(
        prog=PROG,
        description="Train and run the original U-Net (Ronneberger et al. 2015) with seamless overlap-tile "
        "prediction. Images: TIFF files, zarr arrays, or folders of them.",
        epilog="Run 'seamless-unet demo' for a one-minute tour. Details: 'seamless-unet COMMAND --help'.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in (train, predict, postprocess, uncertainty, info, export, demo):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 error, 2 bad arguments, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except UNetInputError as err:
        return fail(err)
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        return fail(f"{err.strerror or err}{where}")
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# Names this module held before the file functions moved to napari_seamless_unet.io (kept for one release).
_MOVED = {
    "list_images": "napari_seamless_unet.io",
    "open_image": "napari_seamless_unet.io",
    "pair_images_and_labels": "napari_seamless_unet.io",
    "create_zarr_output": "napari_seamless_unet.io",
    "write_tiff": "napari_seamless_unet.io",
    "match_instances": "napari_seamless_unet.core.metrics",
}


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(
            f"napari_seamless_unet.cli.{name} is deprecated and will be removed in the next release; "
            f"use {_MOVED[name]}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
