"""Train from scribbles: paint strokes on a Labels layer, click Train, watch a live prediction.

The trainer (:class:`core.train.TrainSession`) runs in a worker; its previews of the part of the
image in view are copied into live layers (:mod:`.live_preview`). Strokes painted while training
runs are picked up by the next steps; training again continues from the last model. Scribbles and
predictions share one colour per class (:mod:`core.colors`); the loss is shown smoothed, with a
plot (:mod:`.loss_plot`); predict, save, export, undo and reset are :mod:`.trained_model`'s row.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui import widgets
from napari.layers import Image, Labels

from ..core.errors import CardiosegError
from ..core.models import list_models, read_card
from ..core.nets import scratch_choices
from ..core.train import TrainConfig, TrainProgress, TrainResult, TrainSession
from . import _common as ui
from . import workers
from .live_preview import LivePreview
from .loss_plot import LOSS_SMOOTHING, LossPlot, smooth
from .trained_model import TrainedModel

if TYPE_CHECKING:
    import napari

DEFAULT_NAMES = ["background", "class 1", "class 2"]
DEFAULT_SECONDS = 60  # first runs: a minute shows whether the strokes are enough


def _convention(class_names: list[str]) -> str:
    painted = ", ".join(f"{i + 1} = {name}" for i, name in enumerate(class_names))
    return f"Paint: {painted}, … (0 = unpainted, ignored)"


def start_choices(_widget: Any = None) -> list[tuple[str, tuple[str, str]]]:
    """List saved models, then architectures from scratch: recommended first, then advanced."""
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
        workers.warm_up_imports()  # the first run's heavy imports, while the user chooses
        self._image = ui.layer_choice(napari_viewer, Image, "image",
                                      "The image to learn from and to predict.")
        self._scribbles = ui.layer_choice(napari_viewer, Labels, "scribbles",
                                          "The Labels layer with your strokes (0 = not painted).")
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
        self.trained = TrainedModel(napari_viewer, self._image, on_saved=self._init.reset_choices,
                                    on_changed=self._model_changed)
        super().__init__(widgets=[
            self._image, self._scribbles, self._new, self._help, self._init, self._budget,
            self._unit, self._freeze, self._train, self._stop, self._progress, self._loss,
            self.trained,
        ])
        self.native.layout().insertWidget(self.index(self._loss) + 1, self._plot)
        self.worker = None
        self.session: TrainSession | None = None
        self.live = LivePreview(napari_viewer)
        for button, slot in ((self._new, self.new_scribbles), (self._train, self.train),
                             (self._stop, self.stop)):
            button.changed.connect(slot)
        self._init.changed.connect(self._show_classes)
        self._stopping = False
        self._smoothed: list[float] = []
        self._show_classes(self._init.value)

    @property
    def result(self) -> TrainResult | None:
        """The last run's model (training continues from it); None before training or after reset."""
        return self.trained.result

    def _model_changed(self) -> None:
        """After Undo or Reset: the class help and the live layers follow the model."""
        self._show_classes()
        self.live.follow(self.result, self)

    def _show_classes(self, value: tuple[str, str] | None = None) -> None:
        if value is None and self.result is None:
            value = self._init.value
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
        """Add an empty Labels layer on top of the chosen image, ready to paint background.

        The (empty) live prediction layer is added first, below it, so that clicking Train
        later adds no layer (adding one stalls the viewer for about 0.1 s).
        """
        image = self._image.value
        try:
            if image is None:
                raise CardiosegError("add or choose an image layer first")
            shape = ui.greyscale_data(image).shape
        except CardiosegError as exc:
            ui.report_error(exc)
            return None
        self.live.start(image, active=None)
        layer = self._viewer.add_labels(np.zeros(shape, np.uint8), colormap=ui.scribble_colormap(),
                                        **ui.output_layer_kwargs(image, f"{image.name} scribbles"))
        layer.mode, layer.selected_label = "paint", 1
        self._scribbles.reset_choices()
        self._scribbles.value = layer
        return layer

    def _config(self, image: Image) -> TrainConfig:
        """Read the run's options from the controls (continuing from the last model, if any)."""
        if self.result is not None:
            start: dict = {"init": (self.result.model, self.result.card)}
        else:
            kind, value = self._init.value or ("arch", None)
            start = {kind: value}
        budget = ({"steps": int(self._budget.value)} if self._unit.value == "steps"
                  else {"time_budget": float(self._budget.value)})
        return TrainConfig(freeze_encoder=self._freeze.value, pixel_size=ui.calibrated_scale(image),
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
            data = ui.greyscale_data(image)
            ui.check_scribbles(scribbles, image)
            config = self._config(image)
        except CardiosegError as exc:
            ui.report_error(exc)
            return
        self.session = None
        scribbles.colormap = ui.scribble_colormap()
        self.live.start(image, active=scribbles)
        self._progress.max, self._progress.value = 1, 0
        self._stopping, self._smoothed, self._loss.value = False, [], "loss: –"  # no stale "done"
        self._plot.set_values([])
        self._set_running(True)
        self.worker = workers.start_generator(self._session_run, data, scribbles.data, config, owner=self,
                                              on_yield=self._on_progress, on_finish=self._finished)

    def _session_run(self, image: Any, scribbles: np.ndarray,
                     config: TrainConfig) -> Generator[TrainProgress, None, TrainResult]:
        """Worker side: build the session, then train (``self.session`` is set for the slots)."""
        self.session = TrainSession([np.asarray(image)], [scribbles], config,
                                    preview=lambda: self.live.view)
        return (yield from self.session.run())

    def _on_progress(self, progress: TrainProgress) -> None:
        if progress.done <= 1 and self.session is not None:
            self.live.volumetric = self.session.ndim == 3  # known once the session is built
            self.live.update_view()
        self._progress.max = progress.total or 0  # 0: a busy bar under a time budget
        self._progress.value = progress.done if progress.total else 0
        if np.isfinite(progress.loss):
            self._smoothed.append(smooth(self._smoothed[-1] if self._smoothed else None,
                                         progress.loss))
            self._loss.value = (f"step {progress.done}  loss {self._smoothed[-1]:.4f}  "
                                f"{progress.elapsed:.0f} s{self._contrast_note()}")
            self._plot.set_values(self._smoothed)
        elif progress.message:  # step 0: the polarity chosen, the head fitted
            self._loss.value = progress.message
        self.live.show(progress)

    def _contrast_note(self) -> str:
        """``; contrast inverted`` while the session sees the image inverted, else empty."""
        return "; contrast inverted" if self.session and self.session.contrast_inverted else ""

    def stop(self) -> None:
        """Stop training after the current step; the best model so far is kept."""
        if self.worker is not None:
            self._stopping = True
            self.worker.quit()

    def _finished(self) -> None:
        session = self.session
        steps = len(session.losses) if session is not None else 0
        if session is not None and steps:
            self.trained.result = session.best()
            self._show_classes()
        self._progress.max, self._progress.value = 1, 1 if steps else 0  # no busy bar left
        best = (self.result.card.training.get("loss", {}).get("best_smoothed")
                if self.result is not None else None)
        kept = f"; best model kept (loss {best:.4f})" if isinstance(best, float) else ""
        note = self._contrast_note()
        if self._stopping:
            self._loss.value = f"stopped after {steps} steps{kept if steps else ''}{note}"
        elif session is not None and steps:
            self._loss.value = f"done: {steps} steps, {session.elapsed:.0f} s{kept}{note}"
        self._stopping = False
        self.worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._train.enabled, self._stop.enabled = not running, running
        self.trained.set_enabled(not running)
