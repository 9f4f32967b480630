"""Per-object measurements of a label image with ``skimage.measure.regionprops_table``, in physical units.

:func:`measure` gives a table (a dict of equal-length columns, as ``regionprops_table`` does, which napari takes
as a layer's ``features`` and pandas as a ``DataFrame``) with one row per object, or per object and plane for a
stack measured plane by plane. Sizes and centroids are physical where a pixel or voxel size is given (``spacing``:
micrometres from :func:`~napari_seamless_unet.io.voxel_size`, so areas in µm² and volumes in µm³), else in pixels.
It needs numpy and scikit-image only (no torch, no pandas): the CLI's ``--measure`` and the Segment dock use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import UNetInputError

#: What a plane's objects are measured by (skimage names); ``intensity_*`` only with an image.
PROPERTIES_2D = (
    "label",
    "area",
    "centroid",
    "bbox",
    "eccentricity",
    "equivalent_diameter_area",
    "intensity_mean",
    "intensity_max",
)
#: What a volume's objects are measured by (``area`` is their volume; eccentricity is defined in 2D only).
PROPERTIES_3D = tuple(p for p in PROPERTIES_2D if p != "eccentricity")
#: The axes a stack is iterated over (each index a column) and those an object is measured in.
STACK_AXES, SPATIAL_AXES = "T", "ZYX"


def default_properties(ndim: int, intensity: bool) -> tuple[str, ...]:
    """The properties :func:`measure` computes for objects of ``ndim`` (2 or 3) dimensions."""
    chosen = PROPERTIES_3D if ndim == 3 else PROPERTIES_2D
    return tuple(p for p in chosen if intensity or not p.startswith("intensity"))


def _check_axes(axes: str | None, ndim: int) -> str:
    if axes is None:
        defaults = {2: "YX", 3: "ZYX", 4: "TZYX"}
        if ndim not in defaults:
            raise UNetInputError(f"labels of {ndim} dimensions: give their axes (e.g. 'TZYX').")
        return defaults[ndim]
    axes = axes.upper()
    if len(axes) != ndim or len(set(axes)) != ndim or any(a not in STACK_AXES + SPATIAL_AXES for a in axes):
        raise UNetInputError(f"axes {axes!r} do not fit labels of {ndim} dimensions (give T, Z, Y, X once each).")
    if "Y" not in axes or "X" not in axes:
        raise UNetInputError(f"axes {axes!r}: labels need Y and X.")
    return axes


def _unit_spacing(spacing: Sequence[float] | None, measured: str) -> tuple[float, ...] | None:
    """The spacing along ``measured`` from a pixel size (Y, X) or voxel size (Z, Y, X)."""
    if spacing is None:
        return None
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) < len(measured) or len(spacing) > 3 or not all(s > 0 for s in spacing):
        raise UNetInputError(
            f"spacing {spacing}: give the positive size of a pixel (Y, X) or voxel (Z, Y, X) of {measured} objects."
        )
    return spacing[len(spacing) - len(measured) :]


def _rename(column: str, measured: str) -> str:
    """Columns named by axis: ``centroid-0`` -> ``centroid_y``, ``bbox-2`` -> ``bbox_max_y``, ``intensity_mean-1``
    -> ``intensity_mean_c1``, and ``area`` -> ``volume`` for volumes."""
    names = measured.lower()
    if column == "area" and len(measured) == 3:
        return "volume"
    base, _, index = column.partition("-")
    if not index.isdigit():
        return column
    i = int(index)
    if base in ("centroid", "centroid_local", "centroid_weighted", "centroid_weighted_local") and i < len(names):
        return f"{base}_{names[i]}"
    if base == "bbox" and i < 2 * len(names):
        return f"bbox_{'min' if i < len(names) else 'max'}_{names[i % len(names)]}"
    if base.startswith("intensity_"):
        return f"{base}_c{i}"
    return column


def measure(
    labels,
    image=None,
    *,
    axes: str | None = None,
    spacing: Sequence[float] | None = None,
    per_plane: bool = False,
    channel_axis: int | None = None,
    properties: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Measure every object of a label image with ``skimage.measure.regionprops_table``.

    Parameters
    ----------
    labels : array of int
        Instance labels (0 background), or class ids (each class measured as one region): a plane, a volume, or a
        stack of them (numpy, zarr or dask; read one plane or volume at a time).
    image : array, optional
        The intensities measured under each object (``intensity_mean``, ``intensity_max``): the shape of
        ``labels``, or with one more axis of channels at ``channel_axis`` (a column per channel, ``_c0``, ...).
    axes : str, optional
        The axes of ``labels`` among T, Z, Y, X (default: YX, ZYX, TZYX by dimensions).
    spacing : sequence of float, optional
        The pixel size (Y, X) or voxel size (Z, Y, X), e.g. from :func:`~napari_seamless_unet.io.voxel_size`:
        areas, volumes, centroids and diameters in its units (µm², µm³, µm). Default: pixels.
    per_plane : bool
        Measure the objects of each Z plane in 2D (a ``z`` column), as a 2D network segmented them; default:
        objects with a Z axis are volumes. A T axis is always iterated (a ``t`` column).
    properties : sequence of str, optional
        ``regionprops_table`` properties (default :func:`default_properties`); ``label`` is always included.

    Returns
    -------
    dict of str to numpy.ndarray
        Equal-length columns: ``label``, the stack's indices (``t``, ``z``), ``area`` (planes) or ``volume``,
        ``centroid_z/y/x``, ``bbox_min_y`` ... ``bbox_max_x`` (pixel indices of the plane or volume, the maximum
        excluded), ``eccentricity`` (planes), ``equivalent_diameter_area`` and with an image ``intensity_mean``
        and ``intensity_max``; other properties keep skimage's names. Rows sorted by stack index, then label.

    Raises
    ------
    UNetInputError
        For axes, spacing or an image that do not fit the labels, or an unknown property.
    """
    from skimage.measure import regionprops_table

    shape = tuple(int(n) for n in labels.shape)
    axes = _check_axes(axes, len(shape))
    measured = "".join(a for a in SPATIAL_AXES if a in axes and not (per_plane and a == "Z"))
    iterated = "".join(a for a in axes if a not in measured)
    unit_spacing = _unit_spacing(spacing, measured)
    if image is not None:
        expected = list(shape)
        if channel_axis is not None:
            channel_axis = channel_axis % (len(shape) + 1)
            expected.insert(channel_axis, int(image.shape[channel_axis]))
        if tuple(image.shape) != tuple(expected):
            raise UNetInputError(
                f"image of shape {tuple(image.shape)} does not fit labels of shape {shape}"
                + ("" if channel_axis is None else f" with channels on axis {channel_axis}")
                + "."
            )
    if properties is None:
        properties = default_properties(len(measured), image is not None)
    properties = ("label", *(p for p in properties if p != "label"))
    unit_axes = "".join(a for a in axes if a in measured)
    order = [unit_axes.index(a) for a in measured]  # the plane or volume in Z, Y, X order
    parts: list[dict[str, np.ndarray]] = []
    for index in np.ndindex(*(shape[axes.index(a)] for a in iterated)):
        where = dict(zip(iterated, index))
        key = tuple(where.get(a, slice(None)) for a in axes)
        unit = np.transpose(np.asarray(labels[key]), order)
        if unit.dtype.kind == "b":
            unit = unit.astype(np.uint8)
        intensity = None
        if image is not None:
            image_key = key if channel_axis is None else (*key[:channel_axis], slice(None), *key[channel_axis:])
            intensity = np.asarray(image[image_key])
            if channel_axis is not None:  # channels last, as skimage wants them
                kept = [i for i, k in enumerate(image_key) if not isinstance(k, int)]
                channel = kept.index(channel_axis)
                intensity = np.moveaxis(intensity, channel, -1)
                intensity = np.transpose(intensity, [*order, len(order)])
            else:
                intensity = np.transpose(intensity, order)
        try:
            table = regionprops_table(unit, intensity, properties=properties, spacing=unit_spacing)
        except (AttributeError, NotImplementedError, TypeError, ValueError) as err:
            raise UNetInputError(f"cannot measure {properties} of {len(measured)}D objects: {err}") from None
        count = len(table["label"])
        columns = {"label": table.pop("label")}
        columns.update({a.lower(): np.full(count, i, dtype=np.int64) for a, i in where.items()})
        columns.update({_rename(name, measured): values for name, values in table.items()})
        parts.append(columns)
    if not parts:  # a stack with an axis of length 0
        return {}
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
