"""Small helpers shared by the widgets: notifications, layer choices, device choices."""

from __future__ import annotations

import functools
import logging
import weakref
from typing import NamedTuple

import napari
from magicgui.widgets import PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from ..core.devices import available_devices
from ..core.errors import UNetInputError
from ..core.openmp import release_openmp_threads
from ._layers import is_output
from ._registry import ModelRegistry, registry_for

logger = logging.getLogger("napari_seamless_unet")


def notify_error(message: str) -> None:
    """Show ``message`` as a napari error notification."""
    show_error(message)


def notify_info(message: str) -> None:
    show_info(message)


def report_exception(err: BaseException, what: str, *, notify: bool = True) -> str:
    """Notify the user of an error from a worker or a handler; returns the message shown.

    User errors (:class:`UNetInputError`) show their own message; anything else is a bug or an environment
    problem, shown with its type and logged with the traceback. ``notify=False`` only builds the message
    (napari's thread workers notify their unexpected errors themselves).
    """
    if isinstance(err, UNetInputError):
        message = str(err)
    else:
        logger.error("%s failed", what, exc_info=(type(err), err, err.__traceback__))
        message = f"{what} failed: {type(err).__name__}: {err}"
    if notify:
        notify_error(message)
    return message


def device_choices() -> list[str]:
    """``auto`` then every device this machine offers (each CUDA device, MPS, CPU)."""
    return ["auto", *available_devices()]


def is_layer(layer, kind: str) -> bool:
    """Whether ``layer`` is a napari layer of class ``kind``; isinstance sees through napari's viewer proxy."""
    return isinstance(layer, getattr(napari.layers, kind))


def layer_choices(viewer, kind: str) -> list[tuple[str, object]]:
    """(name, layer) pairs of the viewer's layers of type ``kind`` ("Image" or "Labels")."""
    if viewer is None:
        return []
    return [(layer.name, layer) for layer in viewer.layers if is_layer(layer, kind)]


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


class UserError(NamedTuple):
    """What a worker returns when the job stopped on a user error (shown as a plain message, no traceback)."""

    error: UNetInputError


def _returning_user_errors(run):
    def guarded():
        try:
            return (yield from run())
        except UNetInputError as err:
            return UserError(err)
        finally:
            # Qt keeps this pool thread for 30 s; its idle OpenMP team would slow the next job's thread 2x
            release_openmp_threads()

    return guarded


def start_worker(run, *, yielded, returned, errored, finished):
    """Run the generator function ``run`` in a napari thread worker wired to the four handlers.

    A :class:`UNetInputError` raised inside ``run`` reaches ``returned`` as a :class:`UserError`, so the user
    sees its message once; any other exception reaches ``errored`` (and napari's own error notification). When
    the job ends, its thread's OpenMP workers are handed back (:mod:`..core.openmp`).
    """
    worker = create_worker(
        _returning_user_errors(run),
        _start_thread=False,
        _connect={"yielded": yielded, "returned": returned, "errored": errored, "finished": finished},
    )
    worker.start()
    return worker


def _registry_widget_destroyed(ref, registry: ModelRegistry, token: int, *_) -> None:
    # Called from the widget's ``destroyed`` signal: its Qt side is gone, only Python attributes may be touched.
    widget = ref()
    if widget is not None:
        widget._release_registry(qt_alive=False)
    else:
        registry.detach(token)


class SessionWidget:
    """A widget of a viewer's session: it uses the viewer's model registry for as long as it is open.

    The registry is released (and emptied once no widget of the viewer uses it) when the widget is closed,
    removed from its dock (napari's close button) or destroyed (the viewer closed). Subclasses implement
    ``_connect_registry(registry)``, ``_disconnect_registry(registry)`` and ``_drop_models()``; the latter drops
    every model reference the widget keeps (and stops a running job), so that nothing keeps a model alive.
    """

    registry: ModelRegistry | None = None
    _registry_token: int | None = None
    _was_docked = False

    def _attach_registry(self, viewer) -> ModelRegistry:
        registry = registry_for(viewer)
        token = id(self)
        registry.attach(token)
        self.registry, self._registry_token = registry, token
        self._connect_registry(registry)
        # A partial holding a weak reference: the connection must not keep the widget alive.
        self.destroyed.connect(functools.partial(_registry_widget_destroyed, weakref.ref(self), registry, token))
        return registry

    def _release_registry(self, qt_alive: bool = True) -> None:
        registry, token = self.registry, self._registry_token
        if registry is None:
            return
        self.registry, self._registry_token = None, None
        self._disconnect_registry(registry)
        self._drop_models(qt_alive)
        registry.detach(token)

    def _connect_registry(self, registry: ModelRegistry) -> None:
        pass

    def _disconnect_registry(self, registry: ModelRegistry) -> None:
        pass

    def _drop_models(self, qt_alive: bool = True) -> None:
        raise NotImplementedError

    # Qt event handlers (the class is mixed into a QWidget)
    def event(self, event):
        from qtpy.QtCore import QEvent

        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._was_docked = True
                if self.registry is None:
                    self._attach_registry(self.viewer)
            elif self._was_docked:
                # napari's dock close button takes the widget out of its dock: the widget is closed.
                self._release_registry()
        return super().event(event)

    def closeEvent(self, event):
        self._release_registry()
        super().closeEvent(event)


class JobRunner:
    """The life cycle both widgets share: one job at a time in a thread worker, a run and a stop button.

    Subclasses implement ``_buttons`` (their run and stop buttons), ``_on_yielded``, ``_on_returned`` and
    ``_on_errored``; ``busy`` stays true until the results (or errors) are handled on the GUI thread.
    """

    worker = None
    job = None
    activity = None  # napari's progress bar of the current run (napari.utils.progress), or None
    _activity_value = (0, None)
    _activity_pending = False
    _busy = False

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    @property
    def busy(self) -> bool:
        """True from the start of a run until its results (or errors) have been handled on the GUI thread."""
        return self._busy

    def _buttons(self) -> tuple:
        raise NotImplementedError

    def _make_buttons(self, run_text: str, stop_text: str, stop) -> tuple:
        """A run button (calls ``self.start``), a stop button (calls ``stop``, enabled while running), their row
        (a QWidget)."""
        run_button = PushButton(text=run_text)
        stop_button = PushButton(text=stop_text, enabled=False)
        run_button.changed.connect(lambda *_: self.start())
        stop_button.changed.connect(lambda *_: stop())
        from ._ui import natural_width

        return run_button, stop_button, natural_width(run_button, stop_button)

    def _launch(self, job):
        self.job = job
        run_button, stop_button = self._buttons()
        run_button.enabled = False
        stop_button.enabled = True
        self._busy = True
        self.worker = start_worker(
            job.run,
            yielded=self._on_yielded,
            returned=self._on_returned,
            errored=self._on_errored,
            finished=self._on_finished,
        )
        return self.worker

    def _open_activity(self, description: str, total: int) -> None:
        """napari's own progress bar for the run (in its activity dock), beside the dock's; closed when it ends."""
        from napari.utils import progress

        self._close_activity()
        self.activity = progress(total=int(total), desc=description)

    def _show_activity(self, done: int, total: int | None = None) -> None:
        """Move napari's bar to ``done`` (of ``total``) from the event loop, not inside the dock's handler: napari's
        bar processes Qt events as it moves, which would run the run's later handlers in the middle of this one."""
        if self.activity is None:
            return
        self._activity_value = (int(done), total)
        if not self._activity_pending:
            from qtpy.QtCore import QTimer

            self._activity_pending = True
            QTimer.singleShot(0, self._move_activity)

    def _move_activity(self) -> None:
        self._activity_pending = False
        bar, (done, total) = self.activity, self._activity_value
        if bar is None:  # the run ended first
            return
        if total is not None and bar.total != int(total):
            bar.total = int(total)
        bar.update(done - bar.n)

    def _close_activity(self) -> None:
        if self.activity is not None:
            self.activity.close()
            self.activity = None

    def _on_finished(self):
        self._close_activity()
        self._busy = False
        run_button, stop_button = self._buttons()
        run_button.enabled = True
        stop_button.enabled = False


def pick_default_layer(combo, viewer, kind: str) -> None:
    """If ``combo`` has no layer chosen, choose the viewer's selected layer of type ``kind``, else the first one.

    Layers the plugin made (probability maps, segmentations, previews) are never picked by default.
    """
    if combo.value is not None:
        return
    active = viewer.layers.selection.active if viewer is not None else None
    if active is not None and is_layer(active, kind) and active in combo.choices and not is_output(active):
        combo.value = active
        return
    for layer in combo.choices:
        if layer is not None and not is_output(layer):
            combo.value = layer
            return
