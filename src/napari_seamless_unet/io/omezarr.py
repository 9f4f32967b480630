"""OME-Zarr (OME-NGFF) images read and labels written with the ``ome-zarr`` library (no torch).

:func:`read_ome_zarr` opens an image's full-resolution level as a dask array with its axes and pixel size;
:func:`write_labels` writes a label image into the image's ``labels/<name>/`` group as the specification asks
(a multiscale pyramid by nearest-neighbour downsampling, the image's scale on every level, ``image-label``
metadata naming the image as its source), so that napari-ome-zarr, Fiji (MoBIE, BigDataViewer) and vizarr show
the labels over the image; :func:`write_ome_zarr` writes a result as an OME-Zarr image of its own.

Dask labels are written block by block: they are first stored in a temporary zarr array beside the image (their
graph, a segmentation perhaps, runs once), from which ``ome-zarr`` makes the pyramid, also block by block.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..core.errors import UNetInputError
from .metadata import voxel_size

#: The order OME-NGFF asks for: time, then channel, then space.
NGFF_ORDER = "TCZYX"
SPATIAL = "ZYX"
#: New images are written as OME-Zarr 0.4 (zarr v2), the version every viewer reads (napari-ome-zarr, Fiji's
#: MoBIE and BigDataViewer, vizarr); labels go into an image in the image's own version.
DEFAULT_VERSION = "0.4"
MICROMETER = "micrometer"


class OmeZarrImage(NamedTuple):
    """An OME-Zarr image as :func:`read_ome_zarr` gives it."""

    data: Any  #: dask array of the full-resolution level (read when computed)
    axes: str  #: one letter per axis of ``data`` among T, C, Z, Y, X, e.g. ``"CZYX"``
    voxel_size: tuple[float, ...] | None  #: (Y, X) or (Z, Y, X) in micrometres, as :func:`~.metadata.voxel_size`


def require_ome_zarr():
    """The ``ome_zarr`` package, or a user error that says how to install it."""
    try:
        import ome_zarr.format
        import ome_zarr.io
        import ome_zarr.reader
        import ome_zarr.writer
    except ImportError:  # pragma: no cover - the dependency is declared for Python 3.11 and newer
        raise UNetInputError(
            "OME-Zarr needs the ome-zarr package: pip install 'ome-zarr>=0.17' (Python 3.11 or newer)."
        ) from None
    return ome_zarr


def _multiscales(attrs: Mapping) -> list | None:
    return attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an OME-Zarr image: a zarr group with ``multiscales`` metadata (OME-Zarr 0.4 or 0.5)."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception:
        return False
    return not hasattr(node, "shape") and bool(_multiscales(dict(node.attrs)))


def _format(path: str | os.PathLike):
    """The ``ome_zarr.format`` of an existing store (0.4 for zarr v2, 0.5 for zarr v3)."""
    import zarr

    formats = require_ome_zarr().format
    group = zarr.open_group(str(path), mode="r")
    return formats.FormatV04() if group.metadata.zarr_format == 2 else formats.FormatV05()


def _check_image(path: Path) -> None:
    if not path.exists():
        raise UNetInputError(f"OME-Zarr image {str(path)!r} does not exist.")
    if not is_ome_zarr(path):
        raise UNetInputError(f"{str(path)!r} is not an OME-Zarr image (a zarr group with multiscales metadata).")


def read_ome_zarr(path: str | os.PathLike) -> OmeZarrImage:
    """Open an OME-Zarr image with ``ome_zarr.reader``: its full-resolution level, axes and pixel size.

    Parameters
    ----------
    path : str or path-like
        The image group (``image.ome.zarr``, or a labels group such as ``image.zarr/labels/cells``).

    Returns
    -------
    OmeZarrImage
        ``(data, axes, voxel_size)``: a dask array (nothing read until computed), its axes from the
        ``multiscales`` metadata (upper case, e.g. ``"TCZYX"``), and the pixel (Y, X) or voxel (Z, Y, X) size of
        the full-resolution level in micrometres (None when the metadata records none).

    Raises
    ------
    UNetInputError
        When the path is no OME-Zarr image, or names an axis other than t, c, z, y, x.
    """
    require_ome_zarr()
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    path = Path(path)
    _check_image(path)
    nodes = list(Reader(parse_url(str(path), fmt=_format(path)))())
    # a labels group yields its image first: take the node of the path itself
    node = next(n for n in nodes if _same_path(n.zarr.path, path) and n.load(Multiscales))
    names = [a["name"] if isinstance(a, dict) else a for a in node.metadata["axes"]]
    axes = "".join(str(n).upper() for n in names)
    if any(a not in NGFF_ORDER for a in axes) or len(set(axes)) != len(axes):
        raise UNetInputError(f"{str(path)!r} has axes {names}: only t, c, z, y and x are understood.")
    return OmeZarrImage(node.data[0], axes, voxel_size(path))


def _same_path(location: str, path: Path) -> bool:
    try:
        return Path(location).resolve() == path.resolve()
    except (OSError, ValueError):  # pragma: no cover - a URL
        return False


def image_scale(path: str | os.PathLike) -> tuple[dict[str, float], dict[str, str | None]]:
    """The physical size of a pixel along each axis of an OME-Zarr image's full-resolution level, and its units.

    Returns
    -------
    (scale, units)
        Dicts keyed by axis letter (``"Z"``, ``"Y"``, ...), in the image's own units (``units``, None where it
        records none); a multiscale-wide scale is applied.
    """
    import zarr

    meta = _multiscales(dict(zarr.open_group(str(path), mode="r").attrs))[0]
    axes = [a if isinstance(a, dict) else {"name": a} for a in meta.get("axes", [])]
    names = [str(a["name"]).upper() for a in axes]
    scale = [1.0] * len(names)
    for transforms in (
        meta["datasets"][0].get("coordinateTransformations") or [],
        meta.get("coordinateTransformations") or [],
    ):
        for transform in transforms:
            if transform.get("type") == "scale":
                scale = [a * float(b) for a, b in zip(scale, transform["scale"])]
    return dict(zip(names, scale)), {n: a.get("unit") for n, a in zip(names, axes)}


def scale_from_voxel_size(axes: str, voxel: Sequence[float] | None) -> dict[str, float]:
    """Per-axis scale for ``axes`` from a voxel size (Y, X) or (Z, Y, X) (other axes: 1)."""
    voxel = tuple(voxel or ())
    sizes = dict(zip(SPATIAL[-len(voxel) :], voxel)) if voxel else {}
    return {a: float(sizes.get(a, 1.0)) for a in axes}


def pyramid_factors(shape: Sequence[int], axes: str, smallest: int = 64) -> list[int]:
    """Downsampling factors 2, 4, 8, ... (in Y and X) while the larger side of a level stays ``smallest`` or more."""
    side = max(int(n) for n, a in zip(shape, axes) if a in "YX")
    factors = []
    while side // (2 ** (len(factors) + 1)) >= smallest:
        factors.append(2 ** (len(factors) + 1))
    return factors


def _default_chunks(shape: Sequence[int], axes: str) -> tuple[int, ...]:
    return tuple(min(int(n), 1024) if a in "YX" else 1 for n, a in zip(shape, axes))


def _level_options(shape, axes: str, factors: Sequence[int], chunks) -> list[dict]:
    """One ``storage_options`` per level: the chunks, clipped to each level's shape."""
    options = []
    for factor in (1, *factors):
        level = [max(1, int(n) // factor) if a in "YX" else int(n) for n, a in zip(shape, axes)]
        options.append({"chunks": tuple(min(c, n) for c, n in zip(chunks, level))})
    return options


def _ngff_order(axes: str, ndim: int) -> tuple[str, list[int]]:
    """OME-NGFF's order of ``axes`` (T, C, Z, Y, X) and the permutation that puts an array's axes in it."""
    axes = axes.upper()
    if len(set(axes)) != len(axes) or any(a not in NGFF_ORDER for a in axes) or "Y" not in axes or "X" not in axes:
        raise UNetInputError(f"axes {axes!r}: OME-Zarr takes Y and X and at most one each of T, C, Z.")
    if len(axes) != ndim:
        raise UNetInputError(f"axes {axes!r} do not fit an array of {ndim} dimensions.")
    order = "".join(a for a in NGFF_ORDER if a in axes)
    return order, [axes.index(a) for a in order]


@contextlib.contextmanager
def _lazy_in_order(data, axes: str, chunks, near: Path):
    """``data`` as a dask array in OME-NGFF's axis order that is cheap to read twice (ome-zarr reads the labels
    once for their values, once to write them), with those axes and chunks: numpy and zarr arrays as they are, a
    dask array first stored block by block in a temporary zarr array in ``near`` (removed afterwards)."""
    import dask.array as da

    order, perm = _ngff_order(axes, len(data.shape))
    chunks = tuple(int(c) for c in chunks) if chunks is not None else _default_chunks(data.shape, axes.upper())
    if len(chunks) != len(axes):
        raise UNetInputError(f"chunks {chunks} do not fit an array of axes {axes!r}.")
    chunks = tuple(min(c, int(n)) for c, n in zip(chunks, data.shape))
    with contextlib.ExitStack() as stack:
        if isinstance(data, da.Array):
            folder = stack.enter_context(tempfile.TemporaryDirectory(dir=near, prefix=".seamless-unet-"))
            staged = str(Path(folder) / "staged.zarr")
            data.rechunk(chunks).to_zarr(staged, overwrite=True)
            data = da.from_zarr(staged)
        elif isinstance(data, np.ndarray):
            data = da.from_array(data, chunks=chunks)
        else:  # a zarr array (or anything indexable): read chunk by chunk
            data = da.from_array(data, chunks=getattr(data, "chunks", chunks))
        yield data.transpose(perm), order, tuple(chunks[i] for i in perm)


def _axes_units(axes: str, units: Mapping[str, str | None] | None) -> dict[str, str] | None:
    found = {a.lower(): u for a, u in (units or {}).items() if a in axes and u}
    return found or None


def write_labels(
    image_path: str | os.PathLike,
    labels,
    name: str = "labels",
    *,
    axes: str,
    scale: Mapping[str, float] | None = None,
    units: Mapping[str, str | None] | None = None,
    chunks: Sequence[int] | None = None,
    levels: Sequence[int] | None = None,
) -> Path:
    """Write ``labels`` into an OME-Zarr image's ``labels/<name>/`` group, with ``ome_zarr.writer.write_labels``.

    Parameters
    ----------
    image_path : str or path-like
        The OME-Zarr image the labels belong to (0.4 or 0.5: the labels are written in the same version).
    labels : numpy, zarr or dask array
        Integer labels over the image's grid (its axes without C). A dask array is computed once, block by block.
    name : str
        The labels' name: ``image.zarr/labels/<name>``, listed in ``labels/``'s metadata; an existing one is replaced.
    axes : str
        One letter per axis of ``labels`` among T, Z, Y, X, e.g. ``"TZYX"``; written in OME-NGFF's order (T, Z, Y, X).
    scale, units : dict, optional
        Physical size of a pixel per axis letter, and its units. Default: the image's own (its full-resolution
        level's scale and axis units), so that the labels lie on the image in every viewer.
    chunks : sequence of int, optional
        Chunks of the full-resolution level, in ``axes`` order (default: planes of up to 1024 x 1024).
    levels : sequence of int, optional
        Downsampling factors of the pyramid in Y and X (nearest neighbour; Z is kept), default 2, 4, ... while the
        larger side stays 64 pixels or more.

    Returns
    -------
    Path
        The labels group, ``image_path/labels/<name>``.
    """
    import zarr

    writer = require_ome_zarr().writer
    image_path = Path(image_path)
    _check_image(image_path)
    if not name or "/" in name or name.startswith("."):
        raise UNetInputError(f"labels name {name!r}: give a plain name such as 'cells'.")
    if np.dtype(labels.dtype).kind not in "iub":
        raise UNetInputError(f"labels must be integers, not {np.dtype(labels.dtype)}.")
    if "C" in axes.upper():
        raise UNetInputError(f"labels have no channel axis: axes {axes!r}.")
    if scale is None:
        scale, image_units = image_scale(image_path)
        units = image_units if units is None else units
    fmt = _format(image_path)
    target = image_path / "labels" / name
    with _lazy_in_order(labels, axes, chunks, image_path.parent) as (data, axes, chunks):
        factors = list(pyramid_factors(data.shape, axes) if levels is None else levels)
        if target.exists():
            shutil.rmtree(target)  # ome-zarr does not overwrite arrays, and would list the name twice
        writer.write_labels(
            data,
            zarr.open_group(str(image_path), mode="a"),
            name=name,
            scaler=None,
            scale_factors=factors,
            fmt=fmt,
            axes=axes.lower(),
            scale={a.lower(): float(scale.get(a, 1.0)) for a in axes},
            axes_units=_axes_units(axes, units),
            storage_options=_level_options(data.shape, axes, factors, chunks),
            label_metadata={"source": {"image": "../../"}},
        )
    _list_once(image_path / "labels", fmt)
    return target


def _list_once(labels_group: Path, fmt) -> None:
    """Each name once in the ``labels`` list of the labels group (ome-zarr appends on every write)."""
    import zarr

    group = zarr.open_group(str(labels_group), mode="a")
    attrs = dict(group.attrs)
    holder = attrs if fmt.version == "0.4" else dict(attrs.get("ome", {}))
    names = list(dict.fromkeys(holder.get("labels", [])))
    holder["labels"] = [n for n in names if (labels_group / n).exists()]
    group.attrs.update(holder if fmt.version == "0.4" else {"ome": holder})


def write_ome_zarr(
    path: str | os.PathLike,
    data,
    *,
    axes: str,
    scale: Mapping[str, float] | None = None,
    units: Mapping[str, str | None] | None = None,
    labels: bool = False,
    chunks: Sequence[int] | None = None,
    levels: Sequence[int] | None = None,
    version: str = DEFAULT_VERSION,
    name: str | None = None,
) -> Path:
    """Write ``data`` as a new OME-Zarr image (replacing ``path``) with ``ome_zarr.writer.write_image``.

    Parameters
    ----------
    path : str or path-like
        The store to create (``result.ome.zarr``).
    data : numpy, zarr or dask array
        The image; a dask array is computed once, block by block.
    axes : str
        Its axes among T, C, Z, Y, X (written in OME-NGFF's order).
    scale, units : dict, optional
        Physical size of a pixel per axis letter (default 1) and units (default: micrometres for Z, Y, X when
        ``scale`` is given, as :func:`~.metadata.voxel_size` gives them).
    labels : bool
        Integer labels: the pyramid keeps label values (nearest neighbour) instead of smoothing.
    chunks, levels
        As for :func:`write_labels`.
    version : {"0.4", "0.5"}
        OME-Zarr version: 0.4 (zarr v2, read by every viewer) or 0.5 (zarr v3).

    Returns
    -------
    Path
        ``path``.
    """
    import zarr

    ome_zarr = require_ome_zarr()
    from ome_zarr.scale import Methods

    if version not in ("0.4", "0.5"):
        raise UNetInputError(f"OME-Zarr version {version!r}: write 0.4 or 0.5.")
    path = Path(path)
    if units is None and scale is not None:
        units = dict.fromkeys(SPATIAL, MICROMETER)
    scale = dict(scale or {})
    fmt = ome_zarr.format.FormatV04() if version == "0.4" else ome_zarr.format.FormatV05()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lazy_in_order(data, axes, chunks, path.parent) as (data, axes, chunks):
        factors = list(pyramid_factors(data.shape, axes) if levels is None else levels)
        if path.exists():
            shutil.rmtree(path)
        ome_zarr.writer.write_image(
            data,
            zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format),
            scale_factors=factors,
            method=Methods.NEAREST if labels else Methods.RESIZE,
            fmt=fmt,
            axes=axes.lower(),
            scale={a.lower(): float(scale.get(a, 1.0)) for a in axes},
            axes_units=_axes_units(axes, units),
            storage_options=_level_options(data.shape, axes, factors, chunks),
            name=name or path.name,
        )
    return path
