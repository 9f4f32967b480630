"""Finding and opening images: TIFF (memory-mapped or a lazy zarr view), zarr arrays and groups, ``.npy`` files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import UNetInputError

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".zarr", ".npy")


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a zarr store: a ``.zarr`` name, or a folder holding zarr metadata."""
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


def image_stem(path: str | os.PathLike) -> str:
    """The file name without its image suffix, ``.ome.tif`` and the like included (``cells.ome.tif`` -> ``cells``)."""
    path = Path(path)
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def list_images(path: str | os.PathLike, what: str = "image") -> list[Path]:
    """The image files named by ``path``: the file itself, or the TIFF/zarr/npy images in a folder.

    Parameters
    ----------
    path : str or path-like
        An image file, a zarr store, or a folder of images (hidden files and other suffixes are skipped).
    what : str
        What the path is, for error messages (e.g. ``"training label"``).

    Returns
    -------
    list of Path
        ``[path]`` for a file or zarr store, else the folder's images sorted by name.

    Raises
    ------
    UNetInputError
        When the path does not exist or the folder holds no images.
    """
    path = Path(path)
    if not path.exists():
        raise UNetInputError(f"{what} path {str(path)!r} does not exist.")
    if path.is_dir() and not is_zarr(path):
        files = sorted(
            (p for p in path.iterdir() if not p.name.startswith(".") and (p.suffix.lower() in IMAGE_SUFFIXES)),
            key=lambda p: p.name,
        )
        if not files:
            raise UNetInputError(f"folder {str(path)!r} holds no images (.tif, .tiff, .zarr or .npy files).")
        return files
    return [path]


def _axes_from_letters(letters: str, ndim: int) -> str | None:
    """Our axes for a file's own axis letters, or None when the file does not say (so they are guessed)."""
    letters = (letters or "").upper().replace("S", "C")
    if len(letters) != ndim or any(a not in "TZCYX" for a in letters) or len(set(letters)) != len(letters):
        return None  # e.g. tifffile's "I"/"Q" (an unnamed sequence): let the shape and the model decide
    return letters if "Y" in letters and "X" in letters else None


def open_image(path: str | os.PathLike, *, lazy: bool = True) -> tuple[Any, str | None]:
    """Open an image file for reading.

    Parameters
    ----------
    path : str or path-like
        A TIFF (``.tif``, ``.tiff``), a zarr array or group (``.zarr``) or a ``.npy`` file.
    lazy : bool
        Keep the pixels on disk where the file allows: TIFFs are memory-mapped where their layout allows, else
        opened as a zarr view that decodes tiles only when they are read; zarr arrays are opened read-only and
        ``.npy`` files memory-mapped. ``False`` reads the whole image into memory.

    Returns
    -------
    (array, axes)
        A numpy, memory-mapped or zarr array, and its axes (e.g. ``"TCYX"``) where the file names them, else None.

    Raises
    ------
    UNetInputError
        When the file does not exist, is no image of a known kind, or cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise UNetInputError(f"image {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if is_zarr(path):
        return open_zarr(path, lazy=lazy)
    if suffix == ".npy":
        try:
            data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
        except ValueError as err:
            raise UNetInputError(f"{str(path)!r} is not a readable .npy image: {err}") from None
        return data, None
    if suffix not in TIFF_SUFFIXES:
        raise UNetInputError(f"{str(path)!r} is not a TIFF (.tif, .tiff), .zarr or .npy image.")
    if path.is_dir():
        raise UNetInputError(f"{str(path)!r} is a folder, not a TIFF file.")
    return _open_tiff(path, lazy)


def _open_tiff(path: Path, lazy: bool) -> tuple[Any, str | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise UNetInputError(f"TIFF {str(path)!r} holds no image.")
            series = tif.series[0]
            letters, ndim = series.axes, len(series.shape)
            if not lazy:
                return series.asarray(), _axes_from_letters(letters, ndim)
    except tifffile.TiffFileError as err:
        raise UNetInputError(f"{str(path)!r} is not a readable TIFF file: {err}") from None
    try:
        data = tifffile.memmap(path, mode="r")
    except (ValueError, tifffile.TiffFileError):
        # Compressed or tiled TIFFs cannot be mapped; zarr reads (and decodes) only the tiles that are asked for.
        import zarr

        data = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
        if not hasattr(data, "shape"):  # a pyramid: its full-resolution level
            data = data["0"]
    if len(data.shape) != ndim:
        letters = ""
    return data, _axes_from_letters(letters, len(data.shape))


def open_zarr(path: str | os.PathLike, *, lazy: bool = True) -> tuple[Any, str | None]:
    """Open a zarr array, or the first array of a zarr group (level ``0`` of an OME-Zarr image), read-only.

    Parameters
    ----------
    path : str or path-like
        The zarr store.
    lazy : bool
        Return the zarr array (read when indexed); ``False`` reads it into a numpy array.

    Returns
    -------
    (array, axes)
        The array, and its axes from an ``axes`` attribute or the OME-Zarr multiscales metadata, else None.

    Raises
    ------
    UNetInputError
        When the store cannot be opened or the group holds no array.
    """
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        message = " ".join(str(err).split())
        raise UNetInputError(f"{str(path)!r} is not a readable zarr array or group: {message}") from None
    axes_attr = None
    if not hasattr(node, "shape"):
        arrays = dict(node.arrays())
        if not arrays:
            raise UNetInputError(f"zarr group {str(path)!r} holds no array.")
        first = "0" if "0" in arrays else sorted(arrays)[0]
        with contextlib.suppress(Exception):  # OME-Zarr names its axes and levels in the multiscales metadata
            meta = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
            axes_attr = "".join(a["name"] if isinstance(a, dict) else a for a in meta[0]["axes"])
            first = meta[0]["datasets"][0]["path"] if meta[0]["datasets"][0]["path"] in arrays else first
        node = arrays[first]
    axes_attr = node.attrs.get("axes", axes_attr)
    axes = _axes_from_letters(axes_attr, len(node.shape)) if isinstance(axes_attr, str) else None
    return (node if lazy else node[...]), axes


class ImageFile:
    """An image file as a lazy array that can travel to other processes, e.g. dask workers.

    Holds the path, shape, dtype and axes; each process opens the file with :func:`open_image` at its first read
    (memory-mapped, or as a zarr view for compressed and tiled TIFFs), so pickling it sends neither the pixels
    (as a pickled memory map would) nor an open file (which a zarr view of a TIFF cannot pickle).

    Parameters
    ----------
    path : str or path-like
        A TIFF, zarr or ``.npy`` image, as for :func:`open_image`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        data, self.axes = open_image(self.path)
        self.shape, self.dtype = tuple(int(n) for n in data.shape), np.dtype(data.dtype)
        self._data = data

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index) -> np.ndarray:
        if self._data is None:
            self._data = open_image(self.path)[0]
        return np.asarray(self._data[index])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}

    def __dask_tokenize__(self):
        stat = self.path.stat()
        return ("ImageFile", str(self.path.resolve()), stat.st_mtime_ns, stat.st_size, self.shape, str(self.dtype))

    def __repr__(self) -> str:
        return f"ImageFile({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"
