"""The Train dock's *start from*: random weights, the model just trained, a model of the session, a starter model or
a model file; what :class:`~._jobs.TrainingJob` passes to the core's ``train(..., init=...)``."""

from __future__ import annotations

import os

from magicgui.widgets import ComboBox, FileEdit

from ..core.errors import UNetInputError
from ..core.starters import STARTERS, starter_path

RANDOM = "random"
JUST_TRAINED = "just-trained"
FILE = "file"
SESSION = "session:"
STARTER = "starter:"


class StartFrom:
    """Two widgets of the Train dock's form: ``choice`` (a ComboBox of (text, key) pairs) and ``file`` (a FileEdit,
    used when ``choice`` is *a model file…*).

    ``just_trained`` is the model the dock trained last: offered (and chosen after each run) as *the model just
    trained*, so that pressing Train again continues from it.
    """

    def __init__(self, registry_of):
        self._registry_of = registry_of  # () -> the dock's ModelRegistry, or None once closed
        self.just_trained = None
        self.just_trained_name: str | None = None
        self.choice = ComboBox(
            label="start from",
            choices=lambda _: self.choices(),
            value=RANDOM,
            tooltip="random weights (a new network), or fine-tune a model: its architecture, classes and task are kept",
        )
        self.file = FileEdit(label="model file", mode="r", filter="*.pt *.zip", visible=False)
        self.choice.changed.connect(self._show_file)

    def choices(self) -> list[tuple[str, str]]:
        items = [("random weights", RANDOM)]
        if self.just_trained is not None:
            items.append(("the model just trained", JUST_TRAINED))
        registry = self._registry_of()
        for name in registry.names() if registry is not None else []:
            if registry.get(name).model is not self.just_trained:
                items.append((f"session: {name}", SESSION + name))
        items += [(f"starter: {name}", STARTER + name) for name in STARTERS]
        items.append(("a model file…", FILE))
        return items

    def reset_choices(self) -> None:
        value = self.choice.value
        self.choice.reset_choices()
        keys = [key for _, key in self.choices()]
        self.choice.value = value if value in keys else RANDOM

    def _show_file(self, *_):
        self.file.visible = self.choice.value == FILE

    def set_trained(self, model, name: str | None) -> None:
        """After a run: offer ``model`` as *the model just trained* and choose it (retraining continues from it)."""
        self.just_trained, self.just_trained_name = model, name
        self.choice.reset_choices()
        self.choice.value = JUST_TRAINED

    def drop(self) -> None:
        """Forget the model just trained (the widget closes: no Qt call, it may be gone)."""
        self.just_trained = self.just_trained_name = None

    def resolve(self) -> tuple[object, str | None]:
        """``(init, description)`` for the chosen start: ``(None, None)`` for random weights; else a UNet or a
        path, and the words the outcome uses ("the model just trained 'x'"). Raises UNetInputError when the choice
        cannot be used (no file given, a starter model not installed, a model gone from the session)."""
        key = self.choice.value or RANDOM
        if key == RANDOM:
            return None, None
        if key == JUST_TRAINED:
            if self.just_trained is None:
                raise UNetInputError("there is no model just trained: choose 'random weights' or another model.")
            registry, name = self._registry_of(), self.just_trained_name
            path = registry.get(name).path if registry is not None and name in registry else None
            return _named(self.just_trained, name, path), f"the model just trained ({name})"
        if key.startswith(SESSION):
            name = key[len(SESSION) :]
            registry = self._registry_of()
            if registry is None or name not in registry:
                raise UNetInputError(f"the model {name!r} is no longer in this session: choose another to start from.")
            entry = registry.get(name)
            return _named(entry.model, name, entry.path), f"{name!r}"
        if key.startswith(STARTER):
            name = key[len(STARTER) :]
            return os.fspath(starter_path(name)), f"the starter model {name!r}"  # ModelFileError if not installed
        path = os.path.expanduser(str(self.file.line_edit.value or "").strip())
        if not path:
            raise UNetInputError("choose the model file to start from (the 'model file' field), or 'random weights'.")
        if not os.path.exists(path):
            raise UNetInputError(f"the model file {path!r} does not exist: choose an existing .unet.pt file.")
        return path, os.path.basename(path)


def _named(model, name: str | None, path: str | None = None):
    """What to start from: the model's file when it has one (its lineage then names the file), else the model,
    named for its lineage by the name it is listed under in the session."""
    path = path or getattr(model, "source_path", None)
    if path and os.path.exists(str(path)):
        return str(path)
    if name and not getattr(model, "source_path", None):
        model.source_path = f"session model {name!r}"
    return model
