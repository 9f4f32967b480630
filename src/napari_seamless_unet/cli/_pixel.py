"""The pixel-size options of ``predict`` and ``segment``: ``--pixel-size`` and ``--no-rescale``, and the pixel size of
each input (the option, else what the file's metadata records) that the core rescales to the model's."""

from __future__ import annotations

import sys

from ..core.errors import UNetInputError
from ._common import PROG, voxel_size


def add_pixel_options(parser) -> None:
    """Add ``--pixel-size`` and ``--no-rescale`` to a ``predict`` or ``segment`` parser."""
    parser.add_argument(
        "--pixel-size",
        type=voxel_size,
        default=None,
        metavar="Y,X",
        help="physical pixel size Y,X (or voxel size Z,Y,X) of the inputs, in the unit of the model's (micrometres "
        "from file metadata); an image of another size than the model's training data is resampled to it, "
        "predicted, and the result resampled back (default: from each file's TIFF or OME-Zarr metadata)",
    )
    parser.add_argument(
        "--no-rescale",
        action="store_true",
        help="predict at the images' own pixel size, whatever the model's and theirs",
    )


def _sizes(values) -> str:
    return " x ".join(f"{v:g}" for v in values)


def image_voxel_size(args, model, src):
    """``--pixel-size``, else the size ``src``'s metadata records (None: unknown); checked against the model."""
    if args.pixel_size is not None:
        if len(args.pixel_size) < model.ndim:
            raise UNetInputError(
                f"--pixel-size {','.join(f'{v:g}' for v in args.pixel_size)} does not fit the model, a 3D network: "
                f"give Z,Y,X."
            )
        return tuple(args.pixel_size)
    from ..io import voxel_size as read_voxel_size

    found = read_voxel_size(src)
    return None if found is None or len(found) < model.ndim else found


def rescale_options(args, model, src) -> dict:
    """``voxel_size`` and ``rescale`` of ``predict``/``segment`` for the input ``src``; says on stderr (unless
    ``--quiet``) when the input is resampled, or when the model knows its pixel size and the input does not."""
    from ..core.rescale import image_voxel_size as along_model_axes
    from ..core.rescale import zoom_factors

    size = image_voxel_size(args, model, src)
    rescale = not args.no_rescale
    if not args.quiet and rescale and model.voxel_size is not None:
        what = "voxel" if model.ndim == 3 else "pixel"
        if size is None:
            print(
                f"{PROG}: {src.name} records no {what} size: predicted at its own (the model's is "
                f"{_sizes(model.voxel_size)}; give --pixel-size to rescale)",
                file=sys.stderr,
            )
        elif zoom_factors(model, size) is not None:
            print(
                f"{PROG}: {src.name}: {what} size {_sizes(along_model_axes(model.ndim, size))} resampled to the "
                f"model's {_sizes(model.voxel_size)} and back",
                file=sys.stderr,
            )
    return {"voxel_size": size, "rescale": rescale}


def refuse_rescaling_on_dask(args, model, src) -> None:
    """The dask path (``--workers``/``--scheduler``) predicts at the image's own pixel size: refuse an input it would
    have to resample, rather than segment it at the wrong scale."""
    from ..core.rescale import zoom_factors

    size = image_voxel_size(args, model, src)
    if not args.no_rescale and zoom_factors(model, size) is not None:
        raise UNetInputError(
            f"{src.name} has pixel size {_sizes(size)}, the model {_sizes(model.voxel_size)}: the dask path "
            f"(--workers/--scheduler) does not resample images to the model's pixel size; run without "
            f"--workers/--scheduler, or give --no-rescale to predict at the image's own pixel size."
        )
