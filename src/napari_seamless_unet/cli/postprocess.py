"""``seamless-unet postprocess``: instance labels from saved probability maps, without the network.

Also holds the instance options that ``segment`` shares (:func:`add_instance_options`), so that a threshold or a
minimum size tuned on a probability map written by ``seamless-unet predict`` gives the same labels as
``seamless-unet segment`` with the same options. Runs on numpy and scipy alone: it never imports torch.
"""

from __future__ import annotations

import argparse
import math

from ._common import add_output_options, axes_letters
from ._outputs import Measurements, add_ome_zarr_options, plan


def probability(text: str) -> float:
    """A threshold: a number at least 0 and below 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 <= value < 1 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a probability at least 0 and below 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def add_instance_options(parser: argparse.ArgumentParser) -> None:
    """The options that turn foreground probabilities into objects (instance models only)."""
    group = parser.add_argument_group("instances (instance models only)")
    group.add_argument(
        "--threshold",
        type=probability,
        default=None,  # the core's (instances.default_options), without importing it (--help stays fast)
        help="foreground where its probability is above this; three-class models: objects grow from the interior "
        "above it into the foreground (interior + border) above it (default: 0.7; 0.5 for a 3D model)",
    )
    group.add_argument(
        "--min-size",
        type=non_negative_int,
        default=None,
        help="drop objects smaller than this (pixels, voxels in 3D; default: 0; 30 for a 3D model)",
    )
    group.add_argument(
        "--fill-holes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fill the holes of each object (default: yes)",
    )
    group.add_argument(
        "--method",
        choices=("components", "watershed", "seeds"),
        default=None,
        help="objects are the connected components of the foreground, a watershed that also splits objects "
        "joined by a neck, or seeds (the confident cores, probability > 0.9) grown over the foreground "
        "(default: components; seeds for a 3D model)",
    )
    group.add_argument(
        "--no-restore-borders",
        dest="restore_borders",
        action="store_false",
        help="leave the gap the network keeps between touching objects (default: give it back to them); "
        "three-class models: objects are their interiors, without the border",
    )
    group.add_argument(
        "--link-planes",
        action="store_true",
        help="give an object one id through the planes of a stack (matched by overlap); default: new ids per plane",
    )


def instance_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``segment`` and ``instances_from_probabilities`` from parsed options; those not
    given are left out, so that the core's defaults (which depend on the model for ``segment``) apply."""
    options = {
        "threshold": args.threshold,
        "min_size": args.min_size,
        "fill_holes": args.fill_holes,
        "method": args.method,
        "restore_borders": args.restore_borders,
        "link_planes": args.link_planes,
    }
    return {name: value for name, value in options.items() if value is not None}


def add_parser(subparsers) -> None:
    """Add the ``postprocess`` command to ``subparsers``."""
    sub = subparsers.add_parser(
        "postprocess",
        help="turn saved probabilities into instance labels (no network)",
        description="Turn probability maps written by 'seamless-unet predict' with an instance model into "
        "instance labels, without running the network: tune --threshold, --min-size and the rest here, then "
        "use the same options with 'seamless-unet segment'.",
    )
    sub.add_argument("inputs", nargs="+", help="probability maps (TIFF, zarr, npy) or folders of them")
    add_output_options(sub, "labels")
    sub.add_argument(
        "--axes",
        type=axes_letters,
        default=None,
        help="axes of the input with C the classes, e.g. CYX, CZYX, ZCYX (default: from the file, else C first)",
    )
    add_instance_options(sub)
    add_ome_zarr_options(sub, into_image=False)
    sub.add_argument("-q", "--quiet", action="store_true", help="no summaries")
    sub.set_defaults(handler=run)


def run(args) -> int:
    """Label every input, writing TIFFs whole and zarr outputs plane by plane; ``--measure``: their objects, plane
    by plane (the probabilities are no intensities: shapes only)."""
    import numpy as np

    from ..core.instances import instances_from_probabilities, probability_axes
    from ..io import list_images, open_image

    inputs = [p for path in args.inputs for p in list_images(path)]
    targets = plan(args, inputs, "labels")
    measurements = Measurements(args.measure)
    try:
        for target in targets:
            src, dst = target.src, target.dst
            data, file_axes = open_image(src)
            axes = probability_axes(data.shape, args.axes or file_axes)
            shape = tuple(n for n, a in zip(data.shape, axes) if a != "C")
            out_axes = axes.replace("C", "")
            out = target.open(shape, np.int32, out_axes, {"source": str(src), "output": "labels"})
            result = instances_from_probabilities(data, axes=axes, out=out, **instance_options(args))
            target.finish(result, out_axes, labels=True)
            measurements.add(src, out if out is not None else result, out_axes, per_plane=True)
            target.cleanup()
            if not args.quiet:
                found = "" if out is not None else f", {len(np.unique(result[result > 0]))} objects"
                print(f"{src} -> {dst} (labels {'x'.join(map(str, shape))} {out_axes}{found})")
    finally:
        for target in targets:
            target.cleanup()
    measurements.write(args.quiet)
    return 0
