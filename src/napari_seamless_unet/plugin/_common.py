"""Small helpers shared by the widgets: notifications, layer choices, device choices."""

from __future__ import annotations

import logging

from napari.utils.notifications import show_error, show_info

from ..core.devices import available_devices
from ..core.errors import UNetInputError

logger = logging.getLogger("napari_seamless_unet")


def notify_error(message: str) -> None:
    """Show ``message`` as a napari error notification."""
    show_error(message)


def notify_info(message: str) -> None:
    show_info(message)


def report_exception(err: BaseException, what: str) -> str:
    """Notify the user of an error from a worker or a handler; returns the message shown.

    User errors (:class:`UNetInputError`) show their own message; anything else is a bug or an environment
    problem, shown with its type and logged with the traceback.
    """
    if isinstance(err, UNetInputError):
        message = str(err)
    else:
        logger.error("%s failed", what, exc_info=(type(err), err, err.__traceback__))
        message = f"{what} failed: {type(err).__name__}: {err}"
    notify_error(message)
    return message


def device_choices() -> list[str]:
    """``auto`` then every device this machine offers (each CUDA device, MPS, CPU)."""
    return ["auto", *available_devices()]


def layer_choices(viewer, kind: str) -> list[tuple[str, object]]:
    """(name, layer) pairs of the viewer's layers of type ``kind`` ("Image" or "Labels")."""
    if viewer is None:
        return []
    return [(layer.name, layer) for layer in viewer.layers if type(layer).__name__ == kind]


def connect_layer_changes(viewer, callback) -> None:
    """Call ``callback()`` whenever layers are added, removed, reordered or renamed."""
    events = viewer.layers.events

    def on_inserted(event=None):
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(callback)
        callback()

    events.inserted.connect(on_inserted)
    events.removed.connect(callback)
    events.reordered.connect(callback)
    for layer in viewer.layers:
        layer.events.name.connect(callback)
