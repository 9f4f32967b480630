"""What every command shares: one-line errors, argument types, progress bars, Ctrl-C and device checks.

Imports nothing heavy (no numpy, no torch), so that ``seamless-unet --help`` starts at once.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from collections.abc import Callable

PROG = "seamless-unet"
EXIT_INTERRUPTED = 130


class _ShowDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default (options whose help already names it are left as they are)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if action.default is None:
            return f"{text} (default: not set)"
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the command line, and whose help
    shows every default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _ShowDefaults)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def fail(message: object, status: int = 1) -> int:
    """Print ``seamless-unet: error: <message>`` as one line on stderr; returns ``status``."""
    one_line = " ".join(str(message).split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return status


# -- argument types ------------------------------------------------------------------------------------------------
def _positive(convert: Callable[[str], float], expected: str, requirement: str) -> Callable[[str], float]:
    """An argparse type: ``convert``ed text that must be a finite number > 0, with messages saying what was wrong."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected {requirement}, got {text}")
        return value

    return parse


positive_int = _positive(int, "a whole number", "a number >= 1")
positive_float = _positive(float, "a number", "a positive number")


def _sizes(example: str):
    """An argument type for ``N``, ``NxM`` (Y x X) or ``DxNxM`` (Z x Y x X, for a 3D network); ``example`` is
    what the error names."""

    def parse(text: str) -> tuple[int, ...]:
        parts = text.lower().replace(",", "x").split("x")
        expected = f"expected {example}, got {text!r}"
        try:
            sizes = tuple(int(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(expected) from None
        if len(sizes) == 1:
            sizes = sizes * 2
        if len(sizes) not in (2, 3) or min(sizes) < 1:
            raise argparse.ArgumentTypeError(expected)
        return sizes

    return parse


#: ``572`` or ``572x700`` (Y x X), or ``20x188x188`` (Z x Y x X, for a 3D network)
tile_size = _sizes("a size like 572, 572x700 or (3D) 20x188x188")
#: an output block of the dask path: ``1024`` or ``1024x2048`` (Y x X), or ``16x512x512`` (Z x Y x X)
block_size = _sizes("a block size like 1024, 1024x2048 or (3D) 16x512x512")


def voxel_size(text: str) -> tuple[float, ...]:
    """``3,1,1`` (Z, Y, X) or ``0.5,0.5`` (Y, X): positive numbers separated by commas (or ``x``)."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        sizes = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 3,1,1 (Z,Y,X) or 0.5,0.5 (Y,X), got {text!r}") from None
    if len(sizes) not in (2, 3) or not all(s > 0 and math.isfinite(s) for s in sizes):
        raise argparse.ArgumentTypeError(f"expected 2 or 3 positive sizes (Z,Y,X or Y,X), got {text!r}")
    return sizes


def axes_letters(text: str) -> str:
    """Axis letters such as ``ZYX``, upper-cased."""
    from ..core.axes import KNOWN_AXES

    axes = text.upper()
    if not axes or any(a not in KNOWN_AXES for a in axes):
        raise argparse.ArgumentTypeError(f"axes are letters among T, Z, C, Y, X (S = C), got {text!r}")
    return axes


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``-q/--quiet``, for the commands that run a network."""
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, mps or auto (default: auto = CUDA, then MPS, then CPU)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")


def add_tiling_options(parser: argparse.ArgumentParser) -> None:
    """``--tile-size``, ``--batch-size``, ``--axes`` and ``--precision``, for the commands that run a network on
    images tile by tile (predict, segment, uncertainty)."""
    parser.add_argument(
        "--tile-size",
        type=tile_size,
        default=None,
        metavar="SIZE",
        help="input tile size, e.g. 572 or 572x700 (Y x X), or 20x188x188 (Z x Y x X) for a 3D model (a valid "
        "size; default: largest that fits)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=None, help="tiles per forward pass")
    parser.add_argument(
        "--axes",
        type=axes_letters,
        default=None,
        help="axes of the input, e.g. YX, ZYX, TZCYX (default: from the file or the shape)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="(default: %(default)s = bf16 on CUDA, fp32 elsewhere)",
    )


def check_device(name: str | None) -> str | None:
    """``name`` when this machine has that device; fails early, listing the devices there are, when not."""
    from ..core.devices import resolve_device

    resolve_device(name)
    return name


# -- progress and Ctrl-C -------------------------------------------------------------------------------------------
class ProgressBar:
    """A tqdm bar made at the first progress event, so that an error found before any work prints no empty bar.

    Speaks the tqdm-like protocol of :func:`~napari_seamless_unet.core.progress.as_callback` (``total``,
    ``update``, ``refresh``, ``reset``); a bar interrupted by an error is cleared, so the error stays one line.
    ``quiet`` disables it; other keyword arguments go to tqdm.
    """

    def __init__(self, quiet: bool = False, **kwargs):
        self._kwargs = {"disable": quiet, "file": sys.stderr, "dynamic_ncols": True, **kwargs}
        self._bar = None

    def _ensure(self, total=None):
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, **self._kwargs)
        return self._bar

    @property
    def total(self):
        return self._bar.total if self._bar is not None else None

    @total.setter
    def total(self, value):
        self._ensure(value).total = value

    def update(self, n: int = 1) -> None:
        self._ensure().update(n)

    def refresh(self) -> None:
        self._ensure().refresh()

    def reset(self, total=None) -> None:
        self._ensure(total).reset(total=total)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if self._bar is not None:
            if exc_type is not None:
                self._bar.leave = False
            self._bar.close()
        return False


class StopOnCtrlC:
    """First Ctrl-C asks training to stop after the current step (it then saves); a second one aborts."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: keep the default handler
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{PROG}: stopping after this step and saving the model (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def add_output_options(parser: argparse.ArgumentParser, kind: str) -> None:
    """``-o/--output`` and ``--format``, shared by the commands that write one result per input."""
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="output .tif/.tiff/.zarr file (one input; .ome.zarr: an OME-Zarr image with a pyramid and the "
        f"input's pixel size) or folder (default: beside each input, named <name>_{kind}.tif)",
    )
    parser.add_argument(
        "--format",
        choices=("tif", "zarr", "ome.zarr"),
        default=None,
        help="file type for outputs written into a folder (default: tif, zarr for zarr inputs; ome.zarr: OME-Zarr "
        "images)",
    )
