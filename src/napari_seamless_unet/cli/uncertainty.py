"""``seamless-unet uncertainty``: where a model is unsure, as a float32 map per input, and the regions to annotate
next (``--propose K``) as a CSV beside each map."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    ProgressBar,
    add_output_options,
    add_run_options,
    add_tiling_options,
    check_device,
    positive_int,
)
from ._outputs import plan
from ._pixel import add_pixel_options, rescale_options

#: the columns of a regions CSV, in order
REGION_COLUMNS = ("rank", "plane", "y0", "x0", "y1", "x1", "score")


def add_parser(subparsers) -> None:
    """Add the ``uncertainty`` command to ``subparsers``."""
    sub = subparsers.add_parser(
        "uncertainty",
        help="write where a model is unsure, and the regions to annotate next",
        description="Write a per-pixel uncertainty map of each image (float32, 0 = sure, 1 = every class equally "
        "likely: the normalised entropy of the probabilities averaged over the 8 flips and quarter turns of every "
        "tile, so 8x the time of predict). With --propose K, also the K non-overlapping regions of highest mean "
        "uncertainty: where a correction teaches the model most (a CSV beside each map, and printed).",
    )
    sub.add_argument("model", help="model file (.unet.pt)")
    sub.add_argument("inputs", nargs="+", help="image files (TIFF, zarr, npy) or folders of them")
    add_output_options(sub, "uncertainty")
    sub.add_argument(
        "--measure",
        choices=("entropy", "disagreement"),
        default=None,
        help="entropy: of the probabilities averaged over the 8 views, high wherever the answer hesitates; "
        "disagreement: that minus the views' mean entropy, high only where the views contradict each other, "
        "which chose better regions to annotate in our simulation (default: disagreement with --propose, else "
        "entropy)",
    )
    sub.add_argument(
        "--propose",
        type=positive_int,
        default=None,
        metavar="K",
        help="also propose the K regions to annotate next, written to <name>_regions.csv beside each map "
        "(columns rank, plane, y0, x0, y1, x1, score; plane: the index in the stack axes, empty for a single plane)",
    )
    sub.add_argument(
        "--region-size",
        type=positive_int,
        default=128,
        metavar="S",
        help="side of a proposed region in pixels (default: %(default)s)",
    )
    sub.add_argument(
        "--per-plane",
        type=positive_int,
        default=None,
        metavar="N",
        help="at most N proposed regions in one plane of a stack (spreads them over the planes)",
    )
    sub.add_argument(
        "--separation",
        type=int,
        default=0,
        metavar="N",
        help="no two proposed regions at the same place (overlapping in Y, X) fewer than "
        "N+1 planes apart in a stack, whose neighbouring planes are near-copies (default: %(default)s)",
    )
    sub.add_argument(
        "--sampling",
        choices=("top", "power"),
        default="top",
        help="top: the K most uncertain regions; power: K drawn at random with probability rising with their "
        "uncertainty (score ** --power), so that they are not all alike (default: %(default)s)",
    )
    sub.add_argument(
        "--power",
        type=float,
        default=1.0,
        help="exponent of --sampling power: larger is closer to top (default: %(default)s)",
    )
    sub.add_argument("--seed", type=int, default=None, help="seed of --sampling power (default: a fresh draw)")
    add_tiling_options(sub)
    add_pixel_options(sub)
    add_run_options(sub)
    sub.set_defaults(handler=run)


def run(args) -> int:
    """Write every input's uncertainty map (and with ``--propose`` its regions CSV)."""
    from ..core.model_io import load_model
    from ..core.regions import PROPOSAL_MEASURE
    from ..io import list_images

    check_device(args.device)
    if args.measure is None:  # the map the regions are chosen from, or the plain one
        args.measure = PROPOSAL_MEASURE if args.propose else "entropy"
    model = load_model(args.model, device="cpu")
    if args.tile_size is not None:
        model.geometry.check_input_shape(args.tile_size, what="tile")
    inputs = [p for path in args.inputs for p in list_images(path)]
    targets = plan(args, inputs, "uncertainty")
    try:
        for target in targets:
            _one(args, model, target)
    finally:
        for target in targets:
            target.cleanup()
    return 0


def _one(args, model, target) -> None:
    import numpy as np

    from ..core.outputs import output_layout
    from ..core.uncertainty import uncertainty
    from ..io import open_image

    src, dst = target.src, target.dst
    image, file_axes = open_image(src)
    axes = args.axes or file_axes
    shape, out_axes = output_layout(model, image.shape, axes, "probabilities")
    shape, out_axes = shape[1:], out_axes[1:]  # no class axis
    attrs = {"source": str(src), "model": str(args.model), "output": "uncertainty", "measure": args.measure}
    out = target.open(shape, np.float32, out_axes, attrs)
    options = {
        "axes": axes,
        "tile_shape": args.tile_size,
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "measure": args.measure,
        **rescale_options(args, model, src),
    }
    with ProgressBar(args.quiet, desc=src.name, unit="tile") as bar:
        result = uncertainty(model, image, out=out, progress=bar, **options)
    target.finish(result, out_axes, labels=False)
    values = np.asarray(target.array[...] if target.tiled else result)
    target.cleanup()
    if not args.quiet:
        size = "x".join(map(str, shape))
        print(f"{src} -> {dst} (uncertainty {size} {out_axes}, mean {float(values.mean()):.3f})")
    if args.propose:
        _propose(args, values, target)


def _propose(args, values, target) -> None:
    """The regions of one map: a CSV beside it, and (unless ``--quiet``) printed best first."""
    from ..core.regions import propose_regions
    from ..io import image_stem, write_csv

    regions = propose_regions(
        values,
        size=args.region_size,
        count=args.propose,
        per_plane=args.per_plane,
        separation=args.separation,
        sampling=args.sampling,
        power=args.power,
        seed=args.seed,
    )
    path = Path(target.dst).parent / f"{image_stem(target.src)}_regions.csv"
    write_csv(path, region_table(regions))
    if not args.quiet:
        print(f"{len(regions)} region(s) to annotate next in {target.src.name} -> {path}")
        for region in regions:
            print("  " + region_text(region))


def plane_text(plane: tuple[int, ...]) -> str:
    """A region's plane index as the CSV writes it: ``""`` for a single plane, ``"3"``, ``"0,3"``."""
    return ",".join(str(int(i)) for i in plane)


def region_table(regions) -> dict[str, list]:
    """The regions as columns (:data:`REGION_COLUMNS`), for ``io.write_csv``."""
    return {
        "rank": [r.rank for r in regions],
        "plane": [plane_text(r.plane) for r in regions],
        "y0": [r.box[0] for r in regions],
        "x0": [r.box[1] for r in regions],
        "y1": [r.box[2] for r in regions],
        "x1": [r.box[3] for r in regions],
        "score": [round(float(r.score), 6) for r in regions],
    }


def region_text(region) -> str:
    """'1. plane 3: y 0-128, x 64-192, score 0.412' (no plane for a single one)."""
    y0, x0, y1, x1 = region.box
    where = f" plane {plane_text(region.plane)}:" if region.plane else ""
    return f"{region.rank}.{where} y {y0}-{y1}, x {x0}-{x1}, score {region.score:.3f}"
