"""Running core generators from the widgets: worker threads, their bars, and start-up warming.

:func:`start_generator` runs a core progress generator in a napari worker wired to a widget (its
slots stop once the widget is gone; closing the dock quits the work); :func:`warm_up_imports`
moves the first run's one-off costs (heavy imports, vispy's first-use caches, a full garbage
collection pass over every long-lived object) to when a widget opens.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import threading
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from napari.qt.threading import GeneratorWorker, create_worker
from qtpy.QtCore import QEvent, QObject

from . import _common

if TYPE_CHECKING:
    from ..core.progress import Progress

BAR_INTERVAL = 0.05  # seconds between updates of napari's activity-dock bars

#: modules the first prediction or training run imports (segmentation-models-pytorch pulls in timm
#: and torchvision); importing them holds the GIL for about 0.1 s at a time
HEAVY_MODULES = ("segmentation_models_pytorch", "onnxruntime")
_warming: list[threading.Thread] = []


def _warm_vispy() -> None:
    """Fill the caches vispy builds on first use when napari adds a Labels layer (about 50 ms)."""
    from vispy.visuals.line.dash_atlas import DashAtlas  # type: ignore[import-untyped]
    from vispy.visuals.shaders.parsing import (  # type: ignore[import-untyped]
        parse_function_signature,
    )

    DashAtlas()  # its dash patterns are cached per process
    parse_function_signature("void main() {}")  # compiles (and caches) the signature regex


def warm_up_imports() -> None:
    """Import :data:`HEAVY_MODULES` and warm vispy in a background thread, once per process.

    Called when a widget opens: the stalls then fall while the user chooses layers and models,
    not into the first run. After each step the objects alive so far (modules, classes, napari's
    and torch's internals) are frozen out of the garbage collector with :func:`gc.freeze`: a full
    collection would otherwise walk all of them and stall the viewer for 80-100 ms at a random
    moment, typically when the first result layer is added.
    """
    if _warming:
        return

    def load() -> None:
        with contextlib.suppress(ImportError):
            _warm_vispy()
        gc.freeze()
        for name in HEAVY_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        gc.freeze()

    _warming.append(threading.Thread(target=load, name="cardioseg-warm-up", daemon=True))
    _warming[0].start()


def widget_alive(widget: Any) -> bool:
    """Tell whether the Qt side of a magicgui widget still exists (False once its viewer closed)."""
    try:
        widget.native.objectName()
    except RuntimeError:  # "wrapped C/C++ object ... has been deleted"
        return False
    return True


class _QuitWhenUndocked(QObject):
    """Quits a worker when its widget is taken out of the window (napari's dock close button).

    napari does not delete a closed dock's widget, it only un-parents it; tabbing or floating a
    dock keeps the parent, so losing it means the panel is gone and its work is no longer wanted.
    """

    def __init__(self, widget: Any, worker: GeneratorWorker) -> None:
        super().__init__(widget)
        self._worker = worker
        widget.installEventFilter(self)
        worker.finished.connect(self._detach)

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        """Quit the worker when ``obj`` (the widget) loses its parent; never consume the event."""
        if (obj is not None and event is not None and event.type() == QEvent.Type.ParentChange
                and obj.parent() is None):
            self._worker.quit()
        return False

    def _detach(self) -> None:
        try:
            parent = self.parent()
            if parent is not None:
                parent.removeEventFilter(self)
            self.deleteLater()
        except RuntimeError:  # the widget, and with it this filter, is already deleted
            pass


def _follow(pbar: Any, progress: Progress, state: dict) -> None:
    """Move napari's activity-dock bar to one yielded :class:`Progress` (its total may change).

    At most every :data:`BAR_INTERVAL` seconds (and always at the end): napari's bar processes
    events while it redraws, and a fast generator would otherwise re-enter it without end.
    """
    total = progress.total or 0
    now = time.perf_counter()
    final = bool(total) and progress.done >= total
    if state.get("busy") or (not final and now - state.get("last", -1.0) < BAR_INTERVAL):
        return
    state["busy"], state["last"] = True, now
    try:
        if total != pbar.total:
            pbar.total = total
        pbar.update(progress.done - pbar.n)
    finally:
        state["busy"] = False


def start_generator(
    func: Callable[..., Generator[Any, Any, Any]],
    *args: Any,
    owner: Any,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    activity: str | None = None,
    total: int | None = None,
    **kwargs: Any,
) -> GeneratorWorker:
    """Run a core progress generator in a worker thread and wire its signals.

    Errors are reported with :func:`._common.report_error`; ``on_yield`` / ``on_return`` /
    ``on_finish`` run on the main thread, where layers may be touched, and only while ``owner``
    (the widget) still exists: closing the viewer quits the worker (napari cancels its registered
    tasks), and its last signals must not reach deleted widgets. Closing the owner's dock quits it
    too. The worker is started before it is returned.

    ``activity`` names a bar in napari's activity dock that follows the yielded
    :class:`Progress` (``done`` of ``total``; busy when the total is unknown). ``total`` is the
    older way: a bar that counts yields up to ``total``; prefer ``activity``.
    """
    progress = {"desc": activity} if activity else {"total": total} if total else None
    # connecting "errored" here stops superqt from also re-raising the error in the Qt event loop
    worker = create_worker(func, *args, _progress=progress, _start_thread=False,
                           _connect={"errored": _common.report_error}, **kwargs)
    if activity:
        state: dict = {}
        worker.yielded.connect(lambda value: _follow(worker.pbar, value, state))
    for signal, slot in ((worker.yielded, on_yield), (worker.returned, on_return),
                         (worker.finished, on_finish)):
        if slot is not None:
            signal.connect(lambda *value, slot=slot: slot(*value) if widget_alive(owner) else None)
    _QuitWhenUndocked(owner.native, worker)
    worker.start()
    return worker


__all__ = ["start_generator", "warm_up_imports", "widget_alive"]
