"""The napari plugin: widgets, sample data and layer conversion (imports napari and Qt; the core does not).

From the napari console, the models of the viewer's session (those the Train widget trained, the files the
Segment widget loaded) are reached with::

    from napari_seamless_unet.plugin import add_model, current_model, model_names

    model = current_model()  # the newest model of this viewer (or current_model(name="cells.unet.pt"))
    add_model(model, "from the console")  # offered (and chosen) in the Segment widget

Importing this package imports neither napari nor Qt; the functions ask napari for the current viewer only when
no ``viewer`` is given.
"""

from __future__ import annotations

import os

__all__ = ["add_model", "current_model", "model_names"]


def _viewer(viewer):
    if viewer is not None:
        return viewer
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        raise RuntimeError("no napari viewer is open: open one, or pass viewer=")
    return viewer


def add_model(model, name: str | None = None, path: str | os.PathLike | None = None, viewer=None) -> str:
    """Offer ``model`` in the Segment widget of ``viewer`` (default: the current viewer).

    Parameters
    ----------
    model : UNet
        A network, e.g. from :func:`napari_seamless_unet.load_model` or :func:`napari_seamless_unet.train`.
    name : str, optional
        The name it is listed under (default: the file name of ``path``, else "model N"). A model of the same
        name (without a file), or of the same file, is replaced.
    path : str or Path, optional
        The file it was saved to, if any.
    viewer : napari.Viewer, optional

    Returns
    -------
    str
        The name it is listed under.
    """
    from ._registry import registry_for

    return registry_for(_viewer(viewer)).add(model, name, path)


def current_model(viewer=None, name: str | None = None):
    """The newest model of ``viewer``'s session (default: the current viewer), or the one listed as ``name``.

    Raises
    ------
    LookupError
        When the session has no model (or none of that name).
    """
    from ._registry import registry_for

    registry = registry_for(_viewer(viewer))
    if name is not None:
        if name not in registry:
            raise LookupError(f"no model named {name!r} in this viewer; models: {registry.names() or 'none'}")
        return registry.get(name).model
    entry = registry.newest()
    if entry is None:
        raise LookupError("this viewer has no model yet: train one with 'Train U-Net', or add_model(model)")
    return entry.model


def model_names(viewer=None) -> list[str]:
    """Names of the models of ``viewer``'s session (default: the current viewer), newest first."""
    from ._registry import registry_for

    return registry_for(_viewer(viewer)).names()
