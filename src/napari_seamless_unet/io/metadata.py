"""Physical pixel and voxel sizes from image metadata: ImageJ and OME TIFFs, OME-Zarr stores (no torch).

Sizes come back in micrometres where the file names its unit (ImageJ's ``unit``, OME's ``PhysicalSize*Unit``,
OME-Zarr's axis units), else in whatever unit the file uses; only their ratios shape a 3D network.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .read import TIFF_SUFFIXES, is_zarr

#: Length units to micrometres (ImageJ, OME and OME-Zarr spellings).
_MICROMETRES = {
    "nm": 1e-3,
    "nanometer": 1e-3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
}
_RESOLUTION_UNIT_CM = 3  # TIFF ResolutionUnit: 1 none, 2 inch (screen dpi, not a microscope's), 3 centimetre


def voxel_size(path: str | os.PathLike) -> tuple[float, ...] | None:
    """The physical pixel size (Y, X) of a plane, or voxel size (Z, Y, X) of an image with a Z axis.

    Parameters
    ----------
    path : str or path-like
        A TIFF (ImageJ hyperstack: ``spacing`` and the X/YResolution tags; OME-TIFF: ``PhysicalSizeZ/Y/X``;
        a plain TIFF: its resolution tags when in centimetres) or a zarr/OME-Zarr store (the ``scale`` of
        ``multiscales[0].datasets[0].coordinateTransformations``).

    Returns
    -------
    tuple of float or None
        Micrometres where the unit is known; None when the file records no size (or only a screen resolution),
        for a stack whose Z spacing is unknown, for ``.npy`` files and for files that cannot be read.
    """
    path = Path(path)
    try:
        if is_zarr(path):
            return _zarr_voxel_size(path)
        if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
            return _tiff_voxel_size(path)
    except Exception:  # metadata is a bonus: an unreadable file is reported by open_image, not here
        return None
    return None


def _to_micrometres(value, unit) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if not (value > 0 and math.isfinite(value)):
        return None
    return value * _MICROMETRES.get(str(unit or "").strip().lower(), 1.0)


def _result(z, y, x, stack: bool) -> tuple[float, ...] | None:
    if y is None or x is None:
        return None
    if not stack:
        return (y, x)
    return None if z is None else (z, y, x)


def _tiff_voxel_size(path: Path) -> tuple[float, ...] | None:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            return None
        letters = tif.series[0].axes.upper()
        # An unnamed sequence ("I", "Q") is read as Z when the axes are guessed from the shape (open_image).
        stack = "Z" in letters or any(a not in "TCSYX" for a in letters)
        if tif.is_ome and tif.ome_metadata:
            found = _ome_xml_sizes(tif.ome_metadata)
            if found is not None:
                return _result(*found, stack=stack)
        page = tif.pages.first
        tags = page.tags
        y = _resolution_size(tags.get("YResolution"))
        x = _resolution_size(tags.get("XResolution"))
        if tif.is_imagej:
            meta = tif.imagej_metadata or {}
            unit = meta.get("unit")
            if unit in (None, "") and "spacing" not in meta and (x, y) == (1.0, 1.0):
                return None  # nothing calibrated: tifffile writes 1 pixel per unit by default
            z = _to_micrometres(meta.get("spacing", 1.0), unit)  # ImageJ's default voxel depth is 1
            return _result(z, _to_micrometres(y, unit), _to_micrometres(x, unit), stack)
        unit_tag = tags.get("ResolutionUnit")
        if unit_tag is None or int(unit_tag.value) != _RESOLUTION_UNIT_CM:
            return None
        return _result(None, _to_micrometres(y, "cm"), _to_micrometres(x, "cm"), stack)


def _resolution_size(tag) -> float | None:
    """The size of one pixel from an X/YResolution tag (pixels per unit, a rational)."""
    if tag is None:
        return None
    value = tag.value
    num, den = value if isinstance(value, tuple) else (value, 1)
    return float(den) / float(num) if num else None


def _ome_xml_sizes(xml: str) -> tuple | None:
    """``(z, y, x)`` in micrometres (None where absent) from the first ``Pixels`` element of OME-XML."""
    match = re.search(r"<(?:\w+:)?Pixels\b([^>]*)>", xml)
    if match is None:
        return None
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
    sizes = tuple(
        _to_micrometres(attrs[f"PhysicalSize{a}"], attrs.get(f"PhysicalSize{a}Unit", "µm"))
        if f"PhysicalSize{a}" in attrs
        else None
        for a in "ZYX"
    )
    return None if all(s is None for s in sizes) else sizes


def _zarr_voxel_size(path: Path) -> tuple[float, ...] | None:
    import zarr

    node = zarr.open(str(path), mode="r")
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        return None
    meta = multiscales[0]
    scale = None
    for transform in meta["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = list(transform["scale"])
    for transform in meta.get("coordinateTransformations", []) or []:  # a scale of the whole multiscale
        if scale is not None and transform.get("type") == "scale":
            scale = [a * b for a, b in zip(scale, transform["scale"])]
    if scale is None:
        return None
    axes = meta.get("axes") or []
    names = [str(a["name"] if isinstance(a, dict) else a).lower() for a in axes]
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
    if len(names) != len(scale):
        return None
    sizes = {name: _to_micrometres(value, unit) for name, unit, value in zip(names, units, scale)}
    return _result(sizes.get("z"), sizes.get("y"), sizes.get("x"), "z" in names)
