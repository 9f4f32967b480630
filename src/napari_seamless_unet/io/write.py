"""Writing results: where each input's output goes, zarr outputs written tile by tile, ImageJ-ready TIFFs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import UNetInputError
from .read import TIFF_SUFFIXES, image_stem, is_zarr


def output_paths(
    inputs: Sequence[Path], output: str | os.PathLike | None, kind: str, fmt: str | None = None
) -> list[Path]:
    """Where each input's result goes.

    Parameters
    ----------
    inputs : sequence of Path
        The input images.
    output : str or path-like, optional
        A ``.tif``/``.tiff``/``.zarr`` file (one input only) or a folder; None writes beside each input.
    kind : str
        What is written (``"labels"``, ``"probabilities"``): results are named ``<stem>_<kind>.<format>``.
    fmt : {"tif", "zarr"}, optional
        File type of results named here; default ``tif``, ``zarr`` for zarr inputs.

    Returns
    -------
    list of Path
        One output path per input.

    Raises
    ------
    UNetInputError
        For one output file but several inputs, an output that would overwrite its input, or two inputs whose
        outputs would have the same name.
    """

    def named_for(folder: Path, src: Path) -> Path:
        suffix = "." + fmt if fmt else (".zarr" if is_zarr(src) else ".tif")
        return folder / f"{image_stem(src)}_{kind}{suffix}"

    if output is None:
        outputs = [named_for(src.parent, src) for src in inputs]
    else:
        out = Path(output)
        file_like = out.suffix.lower() in (*TIFF_SUFFIXES, ".zarr") and not (out.is_dir() and not is_zarr(out))
        if file_like and len(inputs) != 1:
            raise UNetInputError(
                f"{len(inputs)} input images but one output file {str(out)!r}; give an output folder instead."
            )
        outputs = [out] if file_like else [named_for(out, src) for src in inputs]
    for src, dst in zip(inputs, outputs):
        if dst.resolve() == src.resolve():
            raise UNetInputError(f"output {str(dst)!r} would overwrite its input; choose another output path.")
    if len(set(outputs)) != len(outputs):
        raise UNetInputError("two inputs have the same name; their outputs would overwrite each other.")
    return outputs


def create_zarr_output(path: str | os.PathLike, shape: Sequence[int], dtype, axes: str, attrs: dict | None = None):
    """Create (replacing) a zarr array for a result, chunked in planes of at most 1024 x 1024 pixels.

    Parameters
    ----------
    path : str or path-like
        The zarr store to create; an existing one is replaced.
    shape : sequence of int
        The array's shape.
    dtype : numpy dtype
        Its dtype (zero-filled).
    axes : str
        One letter per axis (e.g. ``"CZYX"``); Y and X are chunked by 1024, all other axes by 1.
    attrs : dict, optional
        More attributes to store beside ``axes`` (e.g. the source image and the model).

    Returns
    -------
    zarr.Array
        The new array, open for writing.
    """
    import zarr

    chunks = tuple(min(n, 1024) if a in "YX" else 1 for n, a in zip(shape, axes))
    array = zarr.open_array(str(path), mode="w", shape=tuple(shape), dtype=dtype, chunks=chunks, fill_value=0)
    array.attrs.update({"axes": axes, **(attrs or {})})
    return array


def write_tiff(path: str | os.PathLike, data: np.ndarray, axes: str) -> None:
    """Write ``data`` as a TIFF that ImageJ/Fiji opens as a hyperstack where the dtype allows.

    Parameters
    ----------
    path : str or path-like
        The file to write.
    data : array
        The image.
    axes : str
        One letter per axis of ``data`` among T, Z, C, Y, X. Integers that fit are narrowed to uint16, as ImageJ
        reads 8/16-bit integers and 32-bit floats only; those dtypes are written as an ImageJ hyperstack with
        the axes in ImageJ's order (TZCYX), other dtypes as a plain TIFF with ``axes`` in its metadata.
    """
    import tifffile

    data = np.asarray(data)
    if data.dtype.kind in "iu" and data.dtype.itemsize > 2 and data.size and data.min() >= 0 and data.max() < 2**16:
        data = data.astype(np.uint16)
    order = "".join(a for a in "TZCYX" if a in axes)
    if data.dtype in (np.uint8, np.uint16, np.float32) and sorted(order) == sorted(axes):
        data = np.transpose(data, [axes.index(a) for a in order])
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": order})
    else:
        tifffile.imwrite(path, data, metadata={"axes": axes})


def write_csv(path: str | os.PathLike, tables: Sequence[dict] | dict) -> Path:
    """Write measurement tables (dicts of equal-length columns, e.g. from ``core.measure.measure``) as one CSV.

    Parameters
    ----------
    path : str or path-like
        The CSV file (its folder is made; an existing file is replaced).
    tables : dict or sequence of dict
        One table, or several written one after the other under the union of their columns (in the order first
        seen; a column a table lacks is left empty in its rows).

    Returns
    -------
    Path
        ``path``.
    """
    import csv

    tables = [tables] if isinstance(tables, dict) else list(tables)
    header = list(dict.fromkeys(name for table in tables for name in table))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for table in tables:
            columns = {name: np.asarray(values).tolist() for name, values in table.items()}
            rows = len(next(iter(columns.values()), []))
            empty = [""] * rows
            writer.writerows(zip(*(columns.get(name, empty) for name in header)) if header else [])
    return path
