"""Image files: finding, opening and pairing inputs, and writing results (numpy, tifffile, zarr; no torch).

- :mod:`.read`: :func:`list_images`, :func:`open_image` (TIFF memory-mapped or as a lazy zarr view, zarr, npy),
  :func:`open_zarr`; :class:`ImageFile`, an image file as a lazy array that can be pickled (for dask workers).
- :mod:`.metadata`: :func:`voxel_size`, the physical pixel or voxel size a TIFF or OME-Zarr records.
- :mod:`.omezarr`: :func:`read_ome_zarr`, :func:`write_labels` into an OME-Zarr image's ``labels/`` group,
  :func:`write_ome_zarr` (OME-NGFF multiscale images, with the ``ome-zarr`` library).
- :mod:`.pairs`: :func:`pair_images_and_labels` by file name, :func:`load_pairs` for training.
- :mod:`.write`: :func:`output_paths`, :func:`create_zarr_output`, :func:`write_tiff` (ImageJ hyperstacks),
  :func:`write_csv` (measurement tables).
"""

from __future__ import annotations

from .metadata import voxel_size
from .omezarr import OmeZarrImage, is_ome_zarr, read_ome_zarr, write_labels, write_ome_zarr
from .pairs import LABEL_ENDINGS, load_pairs, pair_images_and_labels
from .read import IMAGE_SUFFIXES, TIFF_SUFFIXES, ImageFile, image_stem, is_zarr, list_images, open_image, open_zarr
from .write import create_zarr_output, output_paths, write_csv, write_tiff

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_ENDINGS",
    "TIFF_SUFFIXES",
    "ImageFile",
    "OmeZarrImage",
    "create_zarr_output",
    "image_stem",
    "is_ome_zarr",
    "is_zarr",
    "list_images",
    "load_pairs",
    "open_image",
    "open_zarr",
    "output_paths",
    "pair_images_and_labels",
    "read_ome_zarr",
    "voxel_size",
    "write_csv",
    "write_labels",
    "write_ome_zarr",
    "write_tiff",
]
