"""Small helpers shared by the widgets (Qt/napari side only)."""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np
from magicgui.widgets import ComboBox, ProgressBar, create_widget
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject

from ..core.colors import prediction_colors, scribble_colors
from ..core.errors import CardiosegError

BAR_INTERVAL = 0.05  # seconds between updates of napari's activity-dock bars

if TYPE_CHECKING:
    import napari

    from ..core.progress import Progress


#: modules the first prediction or training run imports (segmentation-models-pytorch pulls in timm
#: and torchvision); importing them holds the GIL for about 0.1 s at a time
HEAVY_MODULES = ("segmentation_models_pytorch", "onnxruntime")
_warming: list[threading.Thread] = []


def warm_up_imports() -> None:
    """Import :data:`HEAVY_MODULES` in a background thread, once per process.

    Called when a widget opens: the import's stalls then fall while the user chooses layers and
    models, not into the first run.
    """
    if _warming:
        return

    def load() -> None:
        for name in HEAVY_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)

    _warming.append(threading.Thread(target=load, name="cardioseg-warm-up", daemon=True))
    _warming[0].start()


def report_error(exc: BaseException) -> None:
    """Show an exception as a one-line napari notification (no traceback dump)."""
    if isinstance(exc, CardiosegError):
        show_error(str(exc))
    else:
        show_error(f"{type(exc).__name__}: {exc}")


def layer_choice(viewer: napari.viewer.Viewer, kinds: type | tuple[type, ...], label: str,
                 tooltip: str, *, nullable: bool = False,
                 where: Callable[[Any], bool] | None = None) -> ComboBox:
    """Make a combo box of the viewer's layers of ``kinds``, kept current as layers come and go.

    One layer type without a filter uses napari's own layer-typed choice (what a ``Image``
    annotation gives in magicgui); several types, or ``where``, filter the viewer's layer list.
    ``nullable`` adds an empty choice, selected at first.
    """
    if isinstance(kinds, type) and where is None:
        annotation: Any = Optional[kinds] if nullable else kinds  # noqa: UP045 (runtime type)
        box = cast(ComboBox, create_widget(annotation=annotation, label=label,
                                           options={"tooltip": tooltip}))
    else:
        def layers(_widget: Any = None) -> list[tuple[str, Any]]:
            found: list[Any] = [ly for ly in viewer.layers if isinstance(ly, kinds)]
            return [(ly.name, ly) for ly in found if where is None or where(ly)]

        box = ComboBox(label=label, choices=layers, nullable=nullable, tooltip=tooltip)
        if nullable:
            box.value = None
    for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
        event.connect(box.reset_choices)  # napari does this too once docked
    return box


def is_lazy(layer: Any) -> bool:
    """Tell whether a layer's data is multiscale or not held in memory (zarr, dask)."""
    return bool(layer.multiscale or not isinstance(layer.data, np.ndarray))


def full_resolution(layer: Any) -> Any:
    """Return a layer's full-resolution array (level 0 of multiscale data), lazy or not."""
    return layer.data[0] if layer.multiscale else layer.data


def spatial_scale(layer: Any) -> tuple[float, ...]:
    """Return the layer's scale restricted to its spatial (last 2 or 3) axes."""
    return tuple(float(s) for s in layer.scale[-layer.data.ndim :])


def output_layer_kwargs(source: Any, name: str) -> dict:
    """Keyword arguments that place a new layer exactly on top of ``source``."""
    return {"name": name, "scale": tuple(source.scale), "translate": tuple(source.translate)}


def scribble_colormap() -> DirectLabelColormap:
    """Colours of a scribbles layer (:func:`core.colors.scribble_colors`): value k+1 = class k."""
    return DirectLabelColormap(color_dict=scribble_colors(), name="cardioseg scribbles")


def prediction_colormap() -> DirectLabelColormap:
    """Colours of predicted labels (:func:`core.colors.prediction_colors`): label k = class k."""
    return DirectLabelColormap(color_dict=prediction_colors(), name="cardioseg classes")


def result_name(source: Any, model: str, what: str) -> str:
    """``"<image> <model> <what>"``: the name of a layer computed from ``source`` by a model."""
    return f"{source.name} {model} {what}"


def show_progress(bar: ProgressBar, progress: Progress) -> None:
    """Set a progress bar from one yielded :class:`Progress`; an unknown total makes it busy."""
    bar.max = progress.total or 0  # Qt draws a busy bar when min == max == 0
    bar.value = min(progress.done, progress.total) if progress.total else 0
    bar.tooltip = progress.message or None


def refresh_model_lists(viewer: napari.viewer.Viewer) -> None:
    """Make every docked widget with a model list re-read the models (after one was saved)."""
    for widget in viewer.window.dock_widgets.values():
        if hasattr(widget, "refresh_models"):
            widget.refresh_models()


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

    Errors are reported with :func:`report_error`; ``on_yield`` / ``on_return`` / ``on_finish`` run on
    the main thread, where layers may be touched, and only while ``owner`` (the widget) still exists:
    closing the viewer quits the worker (napari cancels its registered tasks), and its last signals
    must not reach deleted widgets. Closing the owner's dock quits it too. The worker is started
    before it is returned.

    ``activity`` names a bar in napari's activity dock that follows the yielded
    :class:`Progress` (``done`` of ``total``; busy when the total is unknown). ``total`` is the
    older way: a bar that counts yields up to ``total``; prefer ``activity``.
    """
    progress = {"desc": activity} if activity else {"total": total} if total else None
    # connecting "errored" here stops superqt from also re-raising the error in the Qt event loop
    worker = create_worker(func, *args, _progress=progress, _start_thread=False,
                           _connect={"errored": report_error}, **kwargs)
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


__all__ = [
    "full_resolution", "is_lazy", "layer_choice", "output_layer_kwargs", "prediction_colormap",
    "refresh_model_lists", "region_in_view", "report_error", "result_name", "scribble_colormap",
    "show_info", "show_progress", "spatial_scale", "start_generator", "warm_up_imports",
    "widget_alive",
]


def region_in_view(viewer: Any, layer: Any, halves: Sequence[int]) -> tuple[slice, ...]:
    """Return the part of ``layer``'s data around the view centre, ``halves[i]`` pixels either side."""
    world = list(viewer.dims.point)
    displayed = list(viewer.dims.displayed)
    for axis, value in zip(displayed, list(viewer.camera.center)[-len(displayed):], strict=True):
        world[axis] = value
    point = layer.world_to_data(world[-layer.ndim:])
    region = []
    for p, half, n in zip(point, halves, layer.data.shape, strict=True):
        c = min(max(round(p), 0), n - 1)
        region.append(slice(max(c - half, 0), min(c + half + 1, n)))
    return tuple(region)
