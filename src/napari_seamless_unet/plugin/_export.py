"""The Segment dock's *Export for bioimage.io* button (in its Options section, which adds no height to the dock):
the chosen model as a bioimage.io package, in a worker.

A click asks for the package's name, description, authors and licence (magicgui's ``request_values``) and for
the file (a ``QFileDialog``); the image layer chosen in the dock gives the test image (its first plane or
volume), and :func:`~napari_seamless_unet.core.bioimageio.export_bioimageio` runs in a napari thread worker.
"""

from __future__ import annotations

import getpass
import re
from pathlib import Path

from magicgui.widgets import PushButton, request_values
from qtpy.QtWidgets import QFileDialog

from ..core.errors import UNetInputError
from . import _layers
from ._common import UserError, notify_info, report_exception, start_worker

LICENSES = ["CC-BY-4.0", "CC0-1.0", "MIT", "BSD-3-Clause", "Apache-2.0"]


def package_name(name: str) -> str:
    """A model's session name as a bioimage.io name (letters, digits, spaces and ``_+-()``, 5 to 128 of them)."""
    name = re.sub(r"\.(unet\.pt|pt|zip)$", "", str(name))
    name = re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", name).strip()
    name = " ".join(name.split())[:120]
    return name if len(name) >= 5 else f"U-Net {name}".strip()


def ask_details(default_name: str) -> dict | None:
    """Name, description, authors and licence from a small dialog; None when cancelled."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some containers)
        user = ""
    return request_values(
        title="Export for bioimage.io",
        name={"value": default_name, "annotation": str, "label": "name"},
        description={
            "value": "A U-Net (Ronneberger et al. 2015) trained with napari-seamless-unet.",
            "annotation": str,
            "label": "description",
        },
        authors={"value": user, "annotation": str, "label": "authors (comma-separated)"},
        license={"value": LICENSES[0], "annotation": str, "options": {"choices": LICENSES}, "label": "licence"},
    )


def ask_path(parent, default: Path) -> Path | None:
    """Where to write the package (a ``.zip``); None when cancelled."""
    chosen, _ = QFileDialog.getSaveFileName(parent, "Export for bioimage.io", str(default), "bioimage.io (*.zip)")
    if not chosen:
        return None
    path = Path(chosen)
    return path if path.suffix.lower() == ".zip" else path.with_name(path.name + ".zip")


class BioimageioExport:
    """The button and its run. ``dock`` is the Segment dock (``resolve_model()``, ``registry``, ``image``,
    ``status``); ``last_path`` is the package written last."""

    def __init__(self, dock):
        self.dock = dock
        self.worker = None
        self.last_path: Path | None = None
        self.button = PushButton(
            text="Export for bioimage.io…",
            tooltip="write the chosen model as a bioimage.io model package (.zip) for bioimage.io, deepImageJ, "
            "ilastik; the chosen image gives its test image",
        )
        self.button.changed.connect(lambda *_: self.start())

    def start(self):
        """Ask for the details and the file, then export in a worker; returns the worker (None if cancelled)."""
        dock = self.dock
        if self.worker is not None and self.worker.is_running:
            return self.worker
        try:
            from ..core.bioimageio import require_bioimageio

            require_bioimageio()
            model = dock.resolve_model()
        except UNetInputError as err:
            dock.status.value = report_exception(err, "Export")
            return None
        listed = dock.registry.name_of(model) if dock.registry is not None else None
        details = ask_details(package_name(listed or "U-Net model"))
        if not details:
            return None
        path = ask_path(dock, Path.home() / f"{package_name(details['name']).replace(' ', '-')}.zip")
        if path is None:
            return None
        layer = dock.image.value
        image, axes = None, None
        if layer is not None:
            axes = _layers.image_axes(layer, model.in_channels)
            image = _layers.layer_data(layer)
        authors = [a.strip() for a in str(details["authors"]).split(",") if a.strip()]

        def run():
            from ..core.bioimageio import export_bioimageio

            yield from ()
            return export_bioimageio(
                model,
                path,
                name=details["name"],
                description=details["description"],
                authors=authors,
                license=details["license"],
                test_image=image,
                test_axes=axes,
            )

        self.button.enabled = False
        dock.status.value = f"Exporting to {path.name} (test tensors, TorchScript, validation)…"
        self.worker = start_worker(
            run, yielded=lambda _: None, returned=self._on_returned, errored=self._on_errored, finished=self._done
        )
        return self.worker

    def _on_returned(self, result):
        if isinstance(result, UserError):
            self.dock.status.value = report_exception(result.error, "Export")
            return
        self.last_path = Path(result)
        message = f"Exported a bioimage.io package: {self.last_path}"
        self.dock.status.value = message
        notify_info(message)

    def _on_errored(self, err):
        self.dock.status.value = report_exception(err, "Export", notify=False)

    def _done(self):
        self.button.enabled = True
