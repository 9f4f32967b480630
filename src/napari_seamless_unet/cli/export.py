"""``seamless-unet export``: a model file as a bioimage.io model package (``OUT.zip``).

Needs the ``bioimageio`` extra (``pip install "napari-seamless-unet[bioimageio]"``); the package runs in
bioimage.io's tools (``bioimageio test OUT.zip``, ``bioimageio predict``), deepImageJ and ilastik, and
``seamless-unet segment OUT.zip image.tif`` opens it again.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UNetInputError
from ._common import axes_letters


def add_parser(subparsers) -> None:
    """Add the ``export`` command to ``subparsers``."""
    export = subparsers.add_parser(
        "export",
        help="write a model as a bioimage.io model package (.zip)",
        description="Write a model as a bioimage.io model package (spec 0.5): PyTorch state dict and TorchScript "
        "weights, the model's normalisation as preprocessing, test tensors predicted by this program, a cover "
        'and the U-Net citation. Needs: pip install "napari-seamless-unet[bioimageio]".',
    )
    export.add_argument("model", help="model file (.unet.pt)")
    export.add_argument("out", help="the package to write (.zip)")
    export.add_argument("--name", required=True, help="the model's name (5-128 letters, digits, spaces, _+-())")
    export.add_argument("--description", required=True, help="a sentence: what it segments, in which images")
    export.add_argument(
        "--author", action="append", required=True, metavar="NAME", help="who trained the model (repeat for several)"
    )
    export.add_argument("--license", default="CC-BY-4.0", help="SPDX licence of the weights (default: %(default)s)")
    export.add_argument(
        "--test-image",
        default=None,
        metavar="IMAGE",
        help="an image like those the model is for: its centre becomes the test input (default: a synthetic one)",
    )
    export.add_argument(
        "--axes", type=axes_letters, default=None, help="axes of --test-image, e.g. YX or CYX (default: inferred)"
    )
    export.add_argument(
        "--training-data", default=None, metavar="TEXT", help="what the model was trained on (default: its metadata)"
    )
    export.add_argument("--tag", action="append", default=[], help="a keyword for bioimage.io (repeat for several)")
    export.add_argument(
        "--documentation", default=None, metavar="README.md", help="Markdown for the package (default: generated)"
    )
    export.add_argument("-q", "--quiet", action="store_true", help="no summary")
    export.set_defaults(handler=run)


def run(args) -> int:
    """Load the model, read the test image, write the package."""
    from ..core.bioimageio import export_bioimageio, require_bioimageio
    from ..core.model_io import load_model

    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        raise UNetInputError(f"a bioimage.io package is a .zip file; give OUT a .zip name, not {str(out)!r}")
    require_bioimageio()  # before any work, with the install command
    model = load_model(args.model)
    image = None
    if args.test_image is not None:
        from ..io import open_image

        image, found_axes = open_image(args.test_image)
        args.axes = args.axes or found_axes
    documentation = Path(args.documentation).read_text(encoding="utf-8") if args.documentation else None
    path = export_bioimageio(
        model,
        out,
        name=args.name,
        description=args.description,
        authors=args.author,
        license=args.license,
        test_image=image,
        test_axes=args.axes,
        training_data=args.training_data,
        tags=args.tag,
        documentation=documentation,
    )
    if not args.quiet:
        print(f"wrote {path}: a bioimage.io model package ({path.stat().st_size / 2**20:.1f} MiB)")
        print(f"  check it with: bioimageio test {path}")
    return 0
