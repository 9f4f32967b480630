"""Models of this napari session: the train widget adds what it trains, the predict widget offers them.

Pure Python (a psygnal signal, no Qt), so a console script can add a model too::

    from napari_seamless_unet.plugin._registry import registry
    registry.add(model, "my model")
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

from psygnal import Signal


@dataclass
class Entry:
    """A model of this session and where it lives on disk (None when it was never saved)."""

    name: str
    model: object
    path: str | None = None


class ModelRegistry:
    """Named models, newest last; ``changed`` is emitted after each change."""

    changed = Signal()

    def __init__(self):
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def add(self, model, name: str | None = None, path: str | os.PathLike | None = None) -> str:
        """Add (or replace, for the same path) a model; returns the name it is listed under."""
        path = None if path is None else os.fspath(path)
        if path is not None:
            for key, entry in list(self._entries.items()):
                if entry.path == path:
                    del self._entries[key]
        base = name or (os.path.basename(path) if path else f"model {len(self._entries) + 1}")
        unique, k = base, 2
        while unique in self._entries:
            unique, k = f"{base} ({k})", k + 1
        self._entries[unique] = Entry(unique, model, path)
        self.changed.emit()
        return unique

    def get(self, name: str) -> Entry:
        return self._entries[name]

    def names(self) -> list[str]:
        """Names, newest first."""
        return list(reversed(self._entries))

    def clear(self) -> None:
        self._entries.clear()
        self.changed.emit()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


registry = ModelRegistry()
