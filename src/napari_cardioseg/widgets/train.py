"""Train from scribbles: paint strokes on a Labels layer, click Train, watch a live prediction.

The trainer (:class:`core.train.TrainSession`) runs in a worker; its previews are written into a
"prediction (live)" Labels layer for the part of the image currently in view (predicted in the
worker; this widget only copies them into the layer). Strokes painted while training runs are
picked up by the next steps. Training again continues from the last model until "Reset model" is
clicked. Scribbles and predictions share one colour per class (:mod:`core.colors`).

The loss is shown smoothed, as an exponential moving average ``s = (1 - a) s + a loss`` with
``a = LOSS_SMOOTHING``, next to a small plot of the smoothed curve: single batches are noisy.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui import widgets
from napari.layers import Image, Labels
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QFileDialog, QWidget

from ..core.errors import CardiosegError
from ..core.models import PRETRAINED_DIR, check_save_name, list_models, read_card, user_models_dir
from ..core.nets import scratch_choices
from ..core.predict import predict_generator, probabilities_to_labels
from ..core.train import TrainConfig, TrainProgress, TrainResult, TrainSession
from . import _common as ui

if TYPE_CHECKING:
    import napari

LIVE = "prediction (live)"
VIEW_HALF = 256  # preview half-width in pixels around the view centre (YX)
VIEW_HALF_Z = 8  # preview half-depth of a 3D sub-volume (3D models)
DEFAULT_NAMES = ["background", "class 1", "class 2"]
DEFAULT_SECONDS = 60  # first runs: a minute shows whether the strokes are enough
LOSS_SMOOTHING = 0.1  # weight of the newest batch in the shown loss (moving average)


def _convention(class_names: list[str]) -> str:
    painted = ", ".join(f"{i + 1} = {name}" for i, name in enumerate(class_names))
    return f"Paint: {painted}, … (0 = unpainted, ignored)"


def smooth(previous: float | None, loss: float, alpha: float = LOSS_SMOOTHING) -> float:
    """One step of the exponential moving average: ``(1 - alpha) * previous + alpha * loss``.

    The first loss (``previous`` None) starts the average.
    """
    return loss if previous is None else (1 - alpha) * previous + alpha * loss


def suggested_name(name: str, day: datetime | None = None) -> str:
    """``NAME-finetuned-YYYYMMDD`` for a pretrained model's name, else ``name`` itself."""
    if not (PRETRAINED_DIR / f"{name}.json").is_file():
        return name
    return f"{name}-finetuned-{(day or datetime.now()).strftime('%Y%m%d')}"


class LossPlot(QWidget):
    """A tiny line plot of the smoothed loss per step (drawn with QPainter; no axes)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []
        self.setFixedHeight(60)
        self.setToolTip("Smoothed training loss per step: it should fall, then level off.")

    def set_values(self, values: Sequence[float]) -> None:
        """Show ``values`` (redrawn at the next paint)."""
        self.values = list(values)
        self.update()

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        values = [v for v in self.values if np.isfinite(v)]
        if len(values) >= 2:
            low, high = min(values), max(values)
            span = (high - low) or 1.0
            w, h = self.width() - 4, self.height() - 4
            step = w / (len(values) - 1)
            line = QPolygonF([QPointF(2 + i * step, 2 + h * (high - v) / span)
                              for i, v in enumerate(values)])
            painter.setPen(QPen(Qt.GlobalColor.green, 1.5))
            painter.drawPolyline(line)
        painter.end()


def start_choices(_widget: Any = None) -> list[tuple[str, tuple[str, str]]]:
    """Saved models, then architectures from scratch: recommended first, then advanced."""
    recommended, advanced = scratch_choices()
    return [
        *[(f"{e.name} ({e.source})", ("init", str(e.path))) for e in list_models()],
        *[(f"from scratch: {name}", ("arch", name)) for name in recommended],
        *[(f"advanced, from scratch: {name}", ("arch", name)) for name in advanced],
    ]


class TrainWidget(widgets.Container):
    """Train or fine-tune a model from scribbles painted on a Labels layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._image = widgets.create_widget(
            annotation=Image, label="image",
            options={"tooltip": "The image to learn from and to predict."})
        self._scribbles = widgets.create_widget(
            annotation=Labels, label="scribbles",
            options={"tooltip": "The Labels layer with your strokes (0 = not painted)."})
        self._new = widgets.PushButton(
            text="New scribbles layer",
            tooltip="Add an empty Labels layer on the image, ready to paint background (1).")
        self._help = widgets.Label(
            value=_convention(DEFAULT_NAMES),
            tooltip="Which label value to paint for each class; unpainted pixels are ignored.")
        self._init = widgets.ComboBox(
            label="start from", choices=start_choices,
            tooltip="Fine-tune a saved model (quickest, if one fits your images), or start a new "
                    "network from scratch (recommended choices first).")
        self._budget = widgets.SpinBox(
            label="budget", value=DEFAULT_SECONDS, min=1, max=1_000_000,
            tooltip="How long to train, in the unit below. Train again to continue.")
        self._unit = widgets.ComboBox(
            label="budget unit", choices=["seconds", "steps"], value="seconds",
            tooltip="seconds: wall-clock time; steps: optimiser updates, each on one batch of "
                    "small windows around your strokes.")
        self._freeze = widgets.CheckBox(
            text="freeze encoder (faster)",
            tooltip="Keep the first half of the network (the encoder, which finds generic "
                    "features) fixed and train only the rest: faster, fine for small changes.")
        self._train = widgets.PushButton(text="Train", tooltip="Start (or continue) training.")
        self._stop = widgets.PushButton(
            text="Stop", enabled=False,
            tooltip="Stop after the current step; the best model so far is kept.")
        self._progress = widgets.ProgressBar(
            label="progress", value=0, min=0, max=1,
            tooltip="Steps done (a moving bar while a time budget runs).")
        self._loss = widgets.Label(
            value="loss: –",
            tooltip="Training error on your strokes, averaged over recent steps "
                    f"(moving average, newest step weighted {LOSS_SMOOTHING:g}); lower is better.")
        self._plot = LossPlot()
        self._predict = widgets.PushButton(
            text="Predict whole image", enabled=False,
            tooltip="Run the trained model on the whole image into a new Labels layer.")
        self._save = widgets.PushButton(
            text="Save model…", enabled=False,
            tooltip="Save the trained model so the Predict widget and the CLI can use it.")
        self._reset = widgets.PushButton(
            text="Reset model", enabled=False,
            tooltip="Forget the trained model: the next Train starts from 'start from' again.")
        super().__init__(widgets=[
            self._image, self._scribbles, self._new, self._help, self._init, self._budget,
            self._unit, self._freeze, self._train, self._stop, self._progress, self._loss,
            self._predict, self._save, self._reset,
        ])
        self.native.layout().insertWidget(self.index(self._loss) + 1, self._plot)
        self.worker = None
        self.session: TrainSession | None = None
        self.result: TrainResult | None = None  # the last run's model; training continues from it
        self._source: Image | None = None
        self._view: tuple[slice, ...] | None = None
        for button, slot in ((self._new, self.new_scribbles), (self._train, self.train),
                             (self._stop, self.stop), (self._predict, self.predict_whole),
                             (self._save, self._save_dialog), (self._reset, self.reset)):
            button.changed.connect(slot)
        self._init.changed.connect(self._show_classes)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._image.reset_choices)
            event.connect(self._scribbles.reset_choices)
        napari_viewer.dims.events.current_step.connect(self._update_view)
        napari_viewer.camera.events.center.connect(self._update_view)
        self._stopping = False
        self._smoothed: list[float] = []
        self._show_classes(self._init.value)

    def _show_classes(self, value: tuple[str, str] | None = None) -> None:
        names = DEFAULT_NAMES
        if self.result is not None:
            names = self.result.card.class_names
        elif value is not None and value[0] == "init":
            try:
                names = read_card(value[1]).class_names
            except CardiosegError as exc:
                ui.report_error(exc)
        self._help.value = _convention(names)

    def new_scribbles(self) -> Labels | None:
        """Add an empty Labels layer on top of the chosen image, ready to paint background."""
        image = self._image.value
        if image is None:
            ui.report_error(CardiosegError("add or choose an image layer first"))
            return None
        layer = self._viewer.add_labels(
            np.zeros(image.data.shape, np.uint8),
            colormap=ui.scribble_colormap(),
            **ui.output_layer_kwargs(image, f"{image.name} scribbles"),
        )
        layer.mode = "paint"
        layer.selected_label = 1
        self._scribbles.reset_choices()
        self._scribbles.value = layer
        return layer

    def _update_view(self, _event: Any = None) -> None:
        """Remember the image region in view (main thread); the trainer reads it for previews."""
        image = self._source
        if image is None:
            return
        halves = [VIEW_HALF, VIEW_HALF] if image.ndim == 2 else [0, VIEW_HALF, VIEW_HALF]
        if image.ndim == 3 and self.session is not None and self.session.ndim == 3:
            halves[0] = VIEW_HALF_Z
        self._view = ui.region_in_view(self._viewer, image, halves)

    def _config(self, image: Image) -> TrainConfig:
        """The run's options from the controls (continuing from the last model, if any)."""
        if self.result is not None:
            start: dict = {"init": (self.result.model, self.result.card)}
        else:
            kind, value = self._init.value or ("arch", None)
            start = {kind: value}
        budget = ({"steps": int(self._budget.value)} if self._unit.value == "steps"
                  else {"time_budget": float(self._budget.value)})
        return TrainConfig(freeze_encoder=self._freeze.value, pixel_size=ui.spatial_scale(image),
                           **start, **budget)

    def train(self) -> None:
        """Start training in a worker (continuing from the current model, if any).

        The session (model, scribble index) is built in the worker too, so clicking Train does not
        freeze the viewer; its errors (e.g. empty scribbles) are reported when they happen.
        """
        image, scribbles = self._image.value, self._scribbles.value
        try:
            if image is None or scribbles is None:
                raise CardiosegError("choose an image layer and a scribbles Labels layer")
            config = self._config(image)
        except CardiosegError as exc:
            ui.report_error(exc)
            return
        self.session = None
        self._source = image
        self._update_view()
        scribbles.colormap = ui.scribble_colormap()
        self._live_layer(image)
        self._progress.max, self._progress.value = 1, 0
        self._stopping = False
        self._smoothed = []
        self._plot.set_values([])
        self._set_running(True)
        self.worker = ui.start_generator(self._session_run, image.data, scribbles.data, config,
                                         owner=self, on_yield=self._on_progress,
                                         on_finish=self._finished)

    def _session_run(self, image: Any, scribbles: np.ndarray,
                     config: TrainConfig) -> Generator[TrainProgress, None, TrainResult]:
        """Worker side: build the session, then train (``self.session`` is set for the slots)."""
        self.session = TrainSession([np.asarray(image)], [scribbles], config,
                                    preview=lambda: self._view)
        return (yield from self.session.run())

    def _live_layer(self, image: Image) -> Labels:
        if LIVE in self._viewer.layers:
            layer = self._viewer.layers[LIVE]
            if layer.data.shape == image.data.shape:
                layer.scale, layer.translate = image.scale, image.translate
                return layer
            self._viewer.layers.remove(layer)
        layer = self._viewer.add_labels(np.zeros(image.data.shape, np.uint8), opacity=0.5,
                                        colormap=ui.prediction_colormap(),
                                        **ui.output_layer_kwargs(image, LIVE))
        self._viewer.layers.selection.active = self._scribbles.value  # keep painting strokes
        return layer

    def _on_progress(self, progress: TrainProgress) -> None:
        if progress.done <= 1:
            self._update_view()  # the session now knows whether its net is 3D
        self._progress.max = progress.total or 0  # 0: a busy bar under a time budget
        self._progress.value = progress.done if progress.total else 0
        if np.isfinite(progress.loss):
            self._smoothed.append(smooth(self._smoothed[-1] if self._smoothed else None,
                                         progress.loss))
            self._loss.value = (f"step {progress.done}  loss {self._smoothed[-1]:.4f}  "
                                f"{progress.elapsed:.0f} s")
            self._plot.set_values(self._smoothed)
        if progress.preview is not None and LIVE in self._viewer.layers:
            layer = self._viewer.layers[LIVE]
            layer.data[progress.preview_region] = progress.preview
            layer.refresh()

    def stop(self) -> None:
        """Stop training after the current step; the best model so far is kept."""
        if self.worker is not None:
            self._stopping = True
            self.worker.quit()

    def _finished(self) -> None:
        steps = len(self.session.losses) if self.session is not None else 0
        if steps:
            self.result = self.session.best()
            self._show_classes()
        self._progress.max, self._progress.value = 1, 1 if steps else 0  # no busy bar left
        best = (self.result.card.training.get("loss", {}).get("best_smoothed")
                if self.result is not None else None)
        kept = f"; best model kept (loss {best:.4f})" if isinstance(best, float) else ""
        if self._stopping:
            self._loss.value = f"stopped after {steps} steps{kept if steps else ''}"
        elif steps:
            self._loss.value = f"done: {steps} steps, {self.session.elapsed:.0f} s{kept}"
        self._stopping = False
        self._idle()

    def _idle(self) -> None:
        self.worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._train.enabled, self._stop.enabled = not running, running
        done = not running and self.result is not None
        self._predict.enabled = self._save.enabled = self._reset.enabled = done

    def reset(self) -> None:
        """Forget the trained model: the next Train starts from the "start from" choice."""
        self.result = None
        self._set_running(False)
        self._show_classes(self._init.value)

    def predict_whole(self) -> None:
        """Predict the whole image with the trained model (labels made in the worker)."""
        image = self._image.value
        if self.result is None or image is None:
            ui.report_error(CardiosegError("train a model and choose an image first"))
            return
        name = self.result.card.name
        self._set_running(True)
        self._train.enabled = self._stop.enabled = False
        self.worker = ui.start_generator(
            _labels_generator, image.data, self.result, owner=self,
            on_return=lambda labels: self._viewer.add_labels(
                labels, colormap=ui.prediction_colormap(),
                **ui.output_layer_kwargs(image, ui.result_name(image, name, "labels"))),
            on_finish=self._idle,
        )

    def save_model(self, path: str | Path) -> Path:
        """Save the trained model as ``STEM.safetensors`` + ``STEM.json`` and refresh model lists."""
        if self.result is None:
            raise CardiosegError("nothing to save: train a model first")
        path = Path(path)
        check_save_name(path)
        self.result.card.name = path.name.removesuffix(".json").removesuffix(".safetensors")
        saved = self.result.save(path)
        ui.refresh_model_lists(self._viewer)
        self._init.reset_choices()
        ui.show_info(f"saved model {saved}")
        return saved

    def _save_dialog(self) -> None:
        name = suggested_name(self.result.card.name if self.result is not None else "model")
        default = str(user_models_dir(create=True) / f"{name}.json")
        path, _ = QFileDialog.getSaveFileName(self.native, "Save model", default,
                                              "Model card (*.json)")
        if path:
            try:
                self.save_model(path)
            except CardiosegError as exc:
                ui.report_error(exc)


def _labels_generator(image: Any, result: TrainResult) -> Generator[Any, None, np.ndarray]:
    """Predict ``image`` with the trained model, returning labels (argmax in the worker)."""
    prob = yield from predict_generator(image, result.model, result.card)
    return probabilities_to_labels(prob)
