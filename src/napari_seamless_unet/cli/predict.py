"""``seamless-unet predict`` and ``segment``: run a model on image files tile by tile and write the results."""

from __future__ import annotations

from ..core.errors import UNetInputError
from ._common import (
    ProgressBar,
    add_output_options,
    add_run_options,
    axes_letters,
    check_device,
    positive_int,
    tile_size,
)
from .postprocess import add_instance_options, instance_options

#: command -> (help, what it writes, the ``output`` of the core's prediction)
COMMANDS = {
    "predict": (
        "write class probabilities of images",
        "probabilities (float32, one channel per class)",
        "probabilities",
    ),
    "segment": (
        "write label images (instances or classes)",
        "labels (objects 1, 2, ... or class ids)",
        "labels",
    ),
}


def add_parser(subparsers) -> None:
    """Add the ``predict`` and ``segment`` commands to ``subparsers``."""
    for name, (help_text, what, output) in COMMANDS.items():
        sub = subparsers.add_parser(
            name, help=help_text, description=f"Run a model on images tile by tile and write {what}."
        )
        sub.add_argument("model", help="model file (.unet.pt)")
        sub.add_argument("inputs", nargs="+", help="image files (TIFF, zarr, npy) or folders of them")
        add_output_options(sub, output)
        sub.add_argument(
            "--tile-size",
            type=tile_size,
            default=None,
            metavar="SIZE",
            help="input tile size, e.g. 572 or 572x700 (Y x X), or 20x188x188 (Z x Y x X) for a 3D model (a valid "
            "size; default: largest that fits)",
        )
        sub.add_argument("--batch-size", type=positive_int, default=None, help="tiles per forward pass")
        sub.add_argument(
            "--axes",
            type=axes_letters,
            default=None,
            help="axes of the input, e.g. YX, ZYX, TZCYX (default: from the file or the shape)",
        )
        sub.add_argument(
            "--precision",
            choices=("auto", "fp32", "bf16", "fp16"),
            default="auto",
            help="(default: %(default)s = bf16 on CUDA, fp32 elsewhere)",
        )
        sub.add_argument(
            "--tta",
            action="store_true",
            help="test-time augmentation: average the 8 flips and quarter turns of every tile (8x slower; "
            "smoother, more continuous boundaries)",
        )
        if name == "segment":
            add_instance_options(sub)
        add_run_options(sub)
        sub.set_defaults(handler=run)


def run(args) -> int:
    """Predict or segment every input (``args.command``), writing TIFFs whole and zarr outputs tile by tile."""
    import numpy as np

    from ..core.model_io import load_model
    from ..core.predict import output_dtype, output_layout, predict, segment
    from ..io import create_zarr_output, list_images, open_image, output_paths, write_tiff

    output = COMMANDS[args.command][2]
    check_device(args.device)
    model = load_model(args.model, device="cpu")
    if args.tile_size is not None:
        if len(args.tile_size) != model.ndim:
            raise UNetInputError(
                f"--tile-size {'x'.join(map(str, args.tile_size))} does not fit the model, a {model.ndim}D network: "
                + ("give Z x Y x X, e.g. 20x188x188." if model.ndim == 3 else "give Y x X, e.g. 572 or 572x700.")
            )
        model.geometry.check_input_shape(args.tile_size, what="tile")
    inputs = [p for path in args.inputs for p in list_images(path)]
    for src, dst in zip(inputs, output_paths(inputs, args.output, output, args.format)):
        image, file_axes = open_image(src)
        axes = args.axes or file_axes
        shape, out_axes = output_layout(model, image.shape, axes, output)
        dst.parent.mkdir(parents=True, exist_ok=True)
        to_zarr = dst.suffix.lower() == ".zarr"
        out = None
        if to_zarr:
            attrs = {"source": str(src), "model": str(args.model), "output": output}
            out = create_zarr_output(dst, shape, output_dtype(model, output), out_axes, attrs)
        kwargs = {
            "axes": axes,
            "tile_shape": args.tile_size,
            "batch_size": args.batch_size,
            "device": args.device,
            "precision": args.precision,
            "out": out,
            "tta": args.tta,
        }
        with ProgressBar(args.quiet, desc=src.name, unit="tile") as bar:
            if output == "labels":
                result = segment(model, image, progress=bar, **instance_options(args), **kwargs)
            else:
                result = predict(model, image, progress=bar, **kwargs)
        if not to_zarr:
            write_tiff(dst, result, out_axes)
        found = ""
        if output == "labels" and model.task == "instances" and not to_zarr:
            found = f", {len(np.unique(result)) - (1 if np.any(result == 0) else 0)} objects"
        if not args.quiet:
            print(f"{src} -> {dst} ({output} {'x'.join(map(str, shape))} {out_axes}{found})")
    return 0
