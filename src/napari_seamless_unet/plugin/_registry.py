"""Models of a napari session: one registry per viewer, created on first use and emptied when the viewer closes.

The Train widget adds what it trains, the Segment widget offers the models of its viewer's registry (and adds the
model files it loads). The registry is pure Python (a psygnal signal, no Qt, no napari import), so a console
script can add a model too; use the public functions of :mod:`napari_seamless_unet.plugin`::

    from napari_seamless_unet.plugin import add_model, current_model
    add_model(model, "my model")  # now offered in the Segment widget of this viewer
    model = current_model()  # the newest model of this viewer

Lifetime: a registry belongs to a viewer and to the plugin widgets docked in it. It is emptied (every model
reference dropped, and the CUDA cache emptied when CUDA is in use) when the last plugin widget of the viewer is
closed or destroyed (as happens when the viewer closes), and it is forgotten when the viewer is garbage
collected. A model replaced by another one of the same file is dropped the same way.
"""

from __future__ import annotations

import gc
import os
import sys
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from psygnal import Signal


@dataclass
class Entry:
    """A model of this session and where it lives on disk (None when it was never saved)."""

    name: str
    model: object
    path: str | None = None


def _free_accelerator_memory() -> None:
    """Return cached GPU memory of dropped models to the driver, if CUDA was ever used (torch imported lazily)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_initialized():
            gc.collect()  # models in reference cycles: free their tensors before emptying the cache
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - a broken CUDA set-up must not break closing a widget
        pass


class ModelRegistry:
    """Named models of one viewer, newest last; ``changed`` is emitted after each change.

    Widgets that use the registry ``attach`` a token and ``detach`` it when they close; when the last one
    detaches the registry empties itself.
    """

    changed = Signal()

    def __init__(self):
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._users: set[int] = set()

    def add(self, model, name: str | None = None, path: str | os.PathLike | None = None) -> str:
        """Add a model; one of the same file (``path``), or of the same ``name`` when neither has a file, is replaced
        (and dropped).

        Returns the name it is listed under.
        """
        path = None if path is None else os.fspath(path)
        replaced = False
        for key, entry in list(self._entries.items()):
            same_file = path is not None and entry.path == path
            same_name = name is not None and key == name and path is None and entry.path is None
            if same_file or same_name:
                del self._entries[key]
                replaced = replaced or entry.model is not model
        base = name or (os.path.basename(path) if path else f"model {len(self._entries) + 1}")
        unique, k = base, 2
        while unique in self._entries:
            unique, k = f"{base} ({k})", k + 1
        self._entries[unique] = Entry(unique, model, path)
        self.changed.emit()
        if replaced:
            _free_accelerator_memory()
        return unique

    def get(self, name: str) -> Entry:
        return self._entries[name]

    def newest(self) -> Entry | None:
        """The entry added last, or None."""
        return next(reversed(self._entries.values()), None)

    def names(self) -> list[str]:
        """Names, newest first."""
        return list(reversed(self._entries))

    def name_of(self, model) -> str | None:
        """The name ``model`` is listed under (None if it is not in the registry)."""
        for entry in self._entries.values():
            if entry.model is model:
                return entry.name
        return None

    def holds(self, model) -> bool:
        return self.name_of(model) is not None

    def remove(self, name: str) -> None:
        """Drop one model."""
        del self._entries[name]
        self.changed.emit()
        _free_accelerator_memory()

    def clear(self, *, emit: bool = True) -> None:
        """Drop every model (``emit=False``: without telling the widgets, which are gone)."""
        had_models = bool(self._entries)
        self._entries.clear()
        if emit:
            self.changed.emit()
        if had_models:
            _free_accelerator_memory()

    # -- users -------------------------------------------------------------------------------------------------
    def attach(self, token: int) -> None:
        """A widget (identified by ``token``, e.g. its ``id``) uses this registry."""
        self._users.add(token)

    def detach(self, token: int) -> None:
        """A widget stopped using the registry; the last one to go empties it (and the viewer forgets it)."""
        if token not in self._users:
            return
        self._users.discard(token)
        if not self._users:
            _forget(self)
            self.clear()

    @property
    def users(self) -> int:
        return len(self._users)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


# viewer id -> (weak reference to the viewer, its registry)
_REGISTRIES: dict[int, tuple[weakref.ref, ModelRegistry]] = {}


def _unwrap(viewer):
    """The viewer itself: napari hands plugin widgets a proxy of it."""
    while hasattr(viewer, "__wrapped__"):
        viewer = viewer.__wrapped__
    return viewer


def _forget(registry: ModelRegistry) -> None:
    for key, (_, reg) in list(_REGISTRIES.items()):
        if reg is registry:
            del _REGISTRIES[key]


def registry_for(viewer, *, create: bool = True) -> ModelRegistry | None:
    """The model registry of ``viewer`` (a napari viewer or the proxy napari gives widgets), made on first use."""
    if viewer is None:
        raise ValueError("a napari viewer is needed: models belong to a viewer's session")
    viewer = _unwrap(viewer)
    key = id(viewer)
    found = _REGISTRIES.get(key)
    if found is not None and found[0]() is viewer:
        return found[1]
    if not create:
        return None
    registry = ModelRegistry()

    def forget(_ref, key=key, registry=registry):
        current = _REGISTRIES.get(key)
        if current is not None and current[1] is registry:
            del _REGISTRIES[key]
        registry.clear(emit=False)  # the viewer was garbage collected, and its widgets with it

    _REGISTRIES[key] = (weakref.ref(viewer, forget), registry)
    return registry


def release(viewer) -> None:
    """Empty and forget the registry of ``viewer`` (if it has one)."""
    registry = registry_for(viewer, create=False)
    if registry is not None:
        _forget(registry)
        registry.clear()
