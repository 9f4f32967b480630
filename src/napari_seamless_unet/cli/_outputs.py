"""Where each input's result goes (TIFF, zarr, OME-Zarr, the input's OME-Zarr ``labels/``), and ``--measure``.

A :class:`Target` is one input's output: :meth:`Target.open` gives the array the core writes into tile by tile
(None for a TIFF, written whole by :meth:`Target.finish`); an OME-Zarr output is written tile by tile into a
temporary zarr array beside it, then with its pyramid by :mod:`napari_seamless_unet.io.omezarr`. A
:class:`Measurements` collects the per-object table of every input and writes one CSV with a ``file`` column.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from ..core.errors import UNetInputError

OME_ZARR = ".ome.zarr"
#: --format choices: a plain zarr array, or an OME-Zarr image with a pyramid
FORMATS = ("tif", "zarr", "ome.zarr")


def add_ome_zarr_options(parser: argparse.ArgumentParser, *, into_image: bool) -> None:
    """``--labels-into-image`` (``segment`` only) and ``--measure``."""
    group = parser.add_argument_group("OME-Zarr and measurements")
    if into_image:
        group.add_argument(
            "--labels-into-image",
            nargs="?",
            const="",
            default=None,
            metavar="NAME",
            help="write the labels into each OME-Zarr input's own labels/NAME group (a pyramid with the image's "
            "pixel size, which napari-ome-zarr, Fiji and vizarr show over the image) instead of -o; NAME defaults "
            "to the model file's name without .unet.pt",
        )
    group.add_argument(
        "--measure",
        default=None,
        metavar="CSV",
        help="also write a table of per-object measurements (area or volume, centroid, bounding box, "
        "eccentricity, equivalent diameter, mean and max intensity; in µm where the file records its pixel size) "
        "of all inputs to this CSV file, one row per object (per object and plane of a 2D model's stack), with a "
        "'file' column naming the input",
    )


def labels_name(args) -> str:
    """``--labels-into-image``'s name, or the model file's (``cells.unet.pt`` -> ``cells``)."""
    if args.labels_into_image:
        return args.labels_into_image
    name = Path(args.model).name
    for suffix in (".unet.pt", ".pt"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or "labels"
    return name or "labels"


def plan(args, inputs: list[Path], kind: str) -> list[Target]:
    """One :class:`Target` per input from ``-o``/``--format`` or ``--labels-into-image``."""
    from ..io import is_ome_zarr, output_paths
    from ..io.omezarr import require_ome_zarr

    if getattr(args, "labels_into_image", None) is not None:
        if args.output is not None or args.format is not None:
            raise UNetInputError("--labels-into-image writes into each input: give no -o/--output or --format.")
        name = labels_name(args)
        require_ome_zarr()
        for src in inputs:
            if not is_ome_zarr(src):
                raise UNetInputError(
                    f"--labels-into-image: {str(src)!r} is not an OME-Zarr image (a zarr group with multiscales "
                    "metadata); write the labels with -o instead."
                )
        return [Target(src, src / "labels" / name, "labels", name) for src in inputs]
    targets = []
    for src, dst in zip(inputs, output_paths(inputs, args.output, kind, args.format)):
        if dst.name.lower().endswith(OME_ZARR):
            targets.append(Target(src, dst, "ome-zarr"))
        else:
            targets.append(Target(src, dst, "zarr" if dst.suffix.lower() == ".zarr" else "tif"))
    if any(t.kind == "ome-zarr" for t in targets):
        require_ome_zarr()  # missing (Python 3.10): said before any work
    return targets


class Target:
    """One input's output: ``kind`` is ``"tif"``, ``"zarr"``, ``"ome-zarr"`` or ``"labels"`` (into ``src``)."""

    def __init__(self, src: Path, dst: Path, kind: str, name: str | None = None):
        self.src, self.dst, self.kind, self.name = Path(src), Path(dst), kind, name
        self.array = None  # what the core writes into (None for a TIFF)
        self._staging: Path | None = None

    @property
    def tiled(self) -> bool:
        """Whether the result is written tile by tile into :attr:`array` (all but TIFFs)."""
        return self.kind != "tif"

    def open(self, shape, dtype, axes: str, attrs: dict):
        """Create the array the result is written into (None for a TIFF): the zarr output, or for OME-Zarr a
        temporary zarr array beside it."""
        from ..io import create_zarr_output

        if self.kind == "tif":
            self.dst.parent.mkdir(parents=True, exist_ok=True)
            return None
        if self.kind == "zarr":
            self.dst.parent.mkdir(parents=True, exist_ok=True)
            self.array = create_zarr_output(self.dst, shape, dtype, axes, attrs)
            return self.array
        near = self.src.parent if self.kind == "labels" else self.dst.parent
        near.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(dir=near, prefix=".seamless-unet-"))
        self.array = create_zarr_output(self._staging / "result.zarr", shape, dtype, axes, attrs)
        return self.array

    def finish(self, result, axes: str, labels: bool) -> None:
        """Write what is not written yet: a TIFF of ``result``, or the OME-Zarr image or labels from the array."""
        from ..io import write_tiff
        from ..io.omezarr import image_scale, is_ome_zarr, write_labels, write_ome_zarr

        if self.kind == "tif":
            write_tiff(self.dst, result, axes)
        elif self.kind == "labels":
            write_labels(self.src, self.array, self.name, axes=axes)
        elif self.kind == "ome-zarr":
            scale, units = _scale_of(self.src, axes, image_scale, is_ome_zarr)
            write_ome_zarr(self.dst, self.array, axes=axes, scale=scale, units=units, labels=labels)

    def cleanup(self) -> None:
        """Remove the temporary array of an OME-Zarr output."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


def _scale_of(src: Path, axes: str, image_scale, is_ome_zarr) -> tuple[dict, dict | None]:
    """The pixel size of an OME-Zarr output along ``axes``: an OME-Zarr input's own scale and units, else the
    input's :func:`~napari_seamless_unet.io.voxel_size` in micrometres."""
    from ..io import voxel_size
    from ..io.omezarr import scale_from_voxel_size

    if is_ome_zarr(src):
        scale, units = image_scale(src)
        return {a: scale.get(a, 1.0) for a in axes}, units
    return scale_from_voxel_size(axes, voxel_size(src)), None


class Measurements:
    """The per-object tables of the inputs, written together to ``path`` (``--measure``), or nothing when None."""

    def __init__(self, path: str | None):
        self.path = path
        self.tables: list[dict] = []

    def add(self, src: Path, labels, axes: str, *, image=None, image_axes: str | None = None, per_plane: bool):
        """Measure one input's labels (``axes``), under ``image`` (``image_axes``: the labels' plus maybe C)."""
        if self.path is None:
            return
        import numpy as np

        from ..core.measure import measure
        from ..io import voxel_size

        spacing = voxel_size(src)
        measured = 2 if per_plane or "Z" not in axes else 3
        if spacing is not None and len(spacing) < measured:
            spacing = None  # a stack without its Z spacing: pixels
        channel_axis = None
        if image is not None and image_axes is not None and "C" in image_axes:
            channel_axis = image_axes.index("C")
            if image_axes.replace("C", "") != axes:
                image = None  # laid out otherwise than the labels: measure shapes only
        table = measure(labels, image, axes=axes, spacing=spacing, per_plane=per_plane, channel_axis=channel_axis)
        rows = len(table.get("label", ()))
        self.tables.append({"file": np.array([str(src)] * rows, dtype=object), **table})

    def write(self, quiet: bool) -> None:
        from ..io import write_csv

        if self.path is None:
            return
        path = write_csv(self.path, self.tables)
        if not quiet:
            rows = sum(len(t["file"]) for t in self.tables)
            print(f"measurements of {rows} objects -> {path}")
