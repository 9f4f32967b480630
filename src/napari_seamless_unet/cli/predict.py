"""``seamless-unet predict`` and ``segment``: run a model on image files tile by tile and write the results."""

from __future__ import annotations

from ..core.errors import UNetInputError
from ._cluster import add_cluster_options, uses_dask
from ._common import (
    ProgressBar,
    add_output_options,
    add_run_options,
    add_tiling_options,
    check_device,
)
from ._outputs import Measurements, add_ome_zarr_options, plan
from ._pixel import add_pixel_options, refuse_rescaling_on_dask, rescale_options
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
        add_tiling_options(sub)
        sub.add_argument(
            "--tta",
            action="store_true",
            help="test-time augmentation: average the 8 flips and quarter turns of every tile (8x slower; "
            "smoother, more continuous boundaries)",
        )
        add_pixel_options(sub)
        if name == "segment":
            add_instance_options(sub)
            add_ome_zarr_options(sub, into_image=True)
        add_cluster_options(sub)
        add_run_options(sub)
        sub.set_defaults(handler=run)


def run(args) -> int:
    """Predict or segment every input (``args.command``), writing TIFFs whole and zarr outputs tile by tile; with
    ``--workers`` or ``--scheduler``, block by block on dask workers (all inputs together)."""
    from ..core.model_io import load_model
    from ..io import list_images

    output = COMMANDS[args.command][2]
    on_dask = uses_dask(args)
    check_device(args.device)
    model = load_model(args.model, device="cpu")
    for option, sizes in (("--tile-size", args.tile_size), ("--chunk-size", args.chunk_size)):
        if sizes is not None and len(sizes) != model.ndim:
            raise UNetInputError(
                f"{option} {'x'.join(map(str, sizes))} does not fit the model, a {model.ndim}D network: "
                + (
                    f"give Z x Y x X, e.g. {'20x188x188' if option == '--tile-size' else '16x512x512'}."
                    if model.ndim == 3
                    else f"give Y x X, e.g. {'572 or 572x700' if option == '--tile-size' else '1024 or 1024x2048'}."
                )
            )
    if args.tile_size is not None:
        model.geometry.check_input_shape(args.tile_size, what="tile")
    if on_dask and getattr(args, "link_planes", False):
        raise UNetInputError(
            "--link-planes follows objects from plane to plane, which the dask path (blocks labelled in parallel) "
            "does not do: run without --workers/--scheduler to link planes."
        )
    inputs = [p for path in args.inputs for p in list_images(path)]
    targets = plan(args, inputs, output)
    measurements = Measurements(getattr(args, "measure", None))
    try:
        if on_dask:
            for target in targets:  # before a cluster starts
                refuse_rescaling_on_dask(args, model, target.src)
            _run_dask(args, model, targets, output, measurements)
        else:
            for target in targets:
                _run_here(args, model, target, output, measurements)
    finally:
        for target in targets:
            target.cleanup()
    measurements.write(args.quiet)
    return 0


def _core_options(args, axes) -> dict:
    """The keyword arguments that predict/segment and predict_dask/segment_dask share."""
    return {
        "axes": axes,
        "tile_shape": args.tile_size,
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "tta": args.tta,
    }


def _summary(model, src, dst, output: str, shape, out_axes: str, result=None) -> str:
    """``src -> dst (labels 96x112 YX, 10 objects)``; the objects are counted where the result is in memory."""
    import numpy as np

    found = ""
    if output == "labels" and model.task == "instances" and result is not None:
        found = f", {len(np.unique(result)) - (1 if np.any(result == 0) else 0)} objects"
    return f"{src} -> {dst} ({output} {'x'.join(map(str, shape))} {out_axes}{found})"


def _run_here(args, model, target, output: str, measurements) -> None:
    """One input in this process: the core's loop, tile by tile, into a zarr output or an array for a TIFF."""
    from ..core.predict import output_dtype, output_layout, predict, segment
    from ..io import open_image

    src, dst = target.src, target.dst
    image, file_axes = open_image(src)
    axes = args.axes or file_axes
    shape, out_axes = output_layout(model, image.shape, axes, output)
    attrs = {"source": str(src), "model": str(args.model), "output": output}
    out = target.open(shape, output_dtype(model, output), out_axes, attrs)
    to_zarr = out is not None
    kwargs = {**_core_options(args, axes), "out": out, **rescale_options(args, model, src)}
    with ProgressBar(args.quiet, desc=src.name, unit="tile") as bar:
        if output == "labels":
            result = segment(model, image, progress=bar, **instance_options(args), **kwargs)
        else:
            result = predict(model, image, progress=bar, **kwargs)
    target.finish(result, out_axes, labels=output == "labels")
    _measure(measurements, model, target, result, out_axes, image, axes)
    target.cleanup()
    if not args.quiet:
        print(_summary(model, src, dst, output, shape, out_axes, None if to_zarr else result))


def _measure(measurements, model, target, result, out_axes: str, image, axes) -> None:
    """``--measure``: the input's objects (a 2D model's plane by plane), under its intensities."""
    from ..core.axes import resolve_axes

    if measurements.path is None:
        return

    image_axes = resolve_axes(image.shape, axes, model.in_channels)
    labels = target.array if target.tiled else result
    per_plane = model.ndim == 2
    measurements.add(target.src, labels, out_axes, image=image, image_axes=image_axes, per_plane=per_plane)


def _on_chunk_grid(result, chunks: tuple[int, ...]):
    """``result`` with every block boundary on a boundary of the zarr ``chunks``, so that no two blocks (written
    by different processes, without a lock) share a zarr chunk; rechunked along the axes where that is not so."""
    import itertools

    target, aligned = [], True
    for sizes, step in zip(result.chunks, chunks):
        if all(edge % step == 0 for edge in list(itertools.accumulate(sizes))[:-1]):
            target.append(sizes)
        else:
            target.append(step * -(-max(sizes) // step))  # the smallest multiple of the zarr chunk that holds a block
            aligned = False
    return result if aligned else result.rechunk(tuple(target))


def _run_dask(args, model, targets, output: str, measurements) -> None:
    """Every input as a lazy dask result, computed together on the workers of ``--workers``/``--scheduler``:
    zarr outputs stored block by block, TIFFs gathered and written here when their last block is done."""
    import numpy as np

    from ..core.predict import output_dtype, output_layout
    from ..io import ImageFile, is_zarr, open_image
    from ._cluster import cluster, compute_blocks

    with cluster(args) as client:
        import dask.array as da

        import napari_seamless_unet as api  # predict_dask and segment_dask, loaded when used

        jobs, lines = [], [""] * len(targets)
        for target in targets:
            src = target.src
            # zarr arrays travel to the workers as they are; other files as their path (each worker opens them)
            if is_zarr(src):
                image, file_axes = open_image(src)
            else:
                image = ImageFile(src)
                file_axes = image.axes
            axes = args.axes or file_axes
            shape, out_axes = output_layout(model, image.shape, axes, output)
            kwargs = {**_core_options(args, axes), "chunks": args.chunk_size, "name": src.name}
            if output == "labels":
                options = {k: v for k, v in instance_options(args).items() if k != "link_planes"}  # refused above
                result = api.segment_dask(model, image, **options, **kwargs)
            else:
                result = api.predict_dask(model, image, **kwargs)
            attrs = {"source": str(src), "model": str(args.model), "output": output}
            out = target.open(shape, output_dtype(model, output), out_axes, attrs)
            if out is not None:
                result = da.store(_on_chunk_grid(result, out.chunks), out, lock=False, compute=False)
            jobs.append((target, image, axes, shape, out_axes, result))

        def done(i: int, persisted) -> None:
            target, image, axes, shape, out_axes, _ = jobs[i]
            data = None if target.tiled else np.asarray(persisted.compute())
            target.finish(data, out_axes, labels=output == "labels")
            _measure(measurements, model, target, data, out_axes, image, axes)
            target.cleanup()
            lines[i] = _summary(model, target.src, target.dst, output, shape, out_axes, data)

        desc = targets[0].src.name if len(targets) == 1 else f"{len(targets)} images"
        compute_blocks(client, [job[-1] for job in jobs], done, quiet=args.quiet, desc=desc)
    if not args.quiet:
        print("\n".join(lines))
