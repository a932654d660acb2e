"""What to do with the model the Train widget has just trained: predict, save, export, forget.

A row of buttons below the Train widget's controls, enabled once a run has produced a model
(:class:`core.train.TrainResult`). Whole-image prediction runs in a worker (labels made there);
saving never shadows a pretrained model's name (:func:`core.models.suggested_name`); export writes
a bioimage.io package (:mod:`.model_export`). Each Train click (a round) continues from the last
model; "Undo last round" goes back to the model before it, since a round of correction strokes
can make the prediction elsewhere worse (the last :data:`ROUNDS_KEPT` models are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, Label, PushButton
from qtpy.QtWidgets import QFileDialog

from ..core.errors import CardiosegError
from ..core.models import check_save_name, suggested_name, user_models_dir
from ..core.predict import predict_steps
from ..core.progress import Progress
from ..core.train import TrainResult
from . import _common as ui
from . import workers
from .model_export import export_model

if TYPE_CHECKING:
    import napari

ROUNDS_KEPT = 5  # earlier models "Undo last round" can go back to (each a copy of the net)


class TrainedModel(Container):
    """Buttons acting on the last trained model; ``result`` is that model (None before training)."""

    def __init__(self, viewer: napari.viewer.Viewer, image: ComboBox,
                 on_saved: Callable[[], None], on_changed: Callable[[], None]) -> None:
        self._viewer, self._image = viewer, image
        self._on_saved, self._on_changed = on_saved, on_changed
        self._predict = PushButton(
            text="Predict whole image",
            tooltip="Run the trained model on the whole image into a new Labels layer.")
        self._save = PushButton(
            text="Save model…",
            tooltip="Save the trained model so the Predict widget and the CLI can use it.")
        self._export = PushButton(
            text="Export to bioimage.io…",
            tooltip="Save the trained model as a bioimage.io package (.zip) that runs in ilastik, "
                    "deepImageJ, BiaPy or Python without this plugin.")
        self._undo = PushButton(
            text="Undo last round",
            tooltip="Go back to the model before the last Train click (keep the strokes; train "
                    "again or predict to see it).")
        self._reset = PushButton(
            text="Reset model",
            tooltip="Forget the trained model: the next Train starts from 'start from' again.")
        self._status = Label(value="", tooltip="What was last done with the trained model.")
        super().__init__(widgets=[self._predict, self._save, self._export, self._undo,
                                  self._reset, self._status], labels=False)
        self.margins = (0, 0, 0, 0)
        self._result: TrainResult | None = None
        self.earlier: list[TrainResult] = []  # the models before the last rounds, oldest first
        self.worker = None
        for button, slot in ((self._predict, self.predict_whole), (self._save, self._save_dialog),
                             (self._export, self.export), (self._undo, self.undo),
                             (self._reset, self.reset)):
            button.changed.connect(slot)
        self.set_enabled(False)

    @property
    def result(self) -> TrainResult | None:
        """The last round's model (the next Train click continues from it)."""
        return self._result

    @result.setter
    def result(self, result: TrainResult) -> None:
        if self._result is not None:
            self.earlier = [*self.earlier, self._result][-ROUNDS_KEPT:]
        self._result = result
        self._status.value = ""

    def set_enabled(self, enabled: bool) -> None:
        """Enable the buttons when ``enabled`` and a model exists (disabled while training)."""
        for button in (self._predict, self._save, self._export, self._reset):
            button.enabled = enabled and self.result is not None and self.worker is None
        self._undo.enabled = enabled and bool(self.earlier) and self.worker is None

    def undo(self) -> None:
        """Go back to the model before the last round; the next Train continues from that one."""
        if not self.earlier:
            ui.report_error(CardiosegError("no earlier round to go back to"))
            return
        self._result = self.earlier.pop()
        steps = self._result.card.training.get("steps", "?")
        self._status.value = f"back to the model before the last round ({steps} steps)"
        self.set_enabled(True)
        self._on_changed()

    def predict_whole(self) -> None:
        """Predict the whole image with the trained model (labels made in the worker)."""
        image = self._image.value
        try:
            if self.result is None or image is None:
                raise CardiosegError("train a model and choose an image first")
            if ui.is_lazy(image):
                raise CardiosegError(f"{image.name!r} is not held in memory; save the model and "
                                     "predict it with the Predict widget, which streams it")
            data = ui.greyscale_data(image)
        except CardiosegError as exc:
            ui.report_error(exc)
            return
        name = self.result.card.name
        self.worker = workers.start_generator(
            predict_steps, data, self.result.model, self.result.card, owner=self,
            activity=f"Predict ({name})",
            on_return=lambda prediction: self._viewer.add_labels(
                prediction.labels, colormap=ui.prediction_colormap(),
                **ui.output_layer_kwargs(image, ui.result_name(image, name, "labels"),
                                         {ui.RESULT_KEY: name})),
            on_finish=self._idle,
        )
        self.set_enabled(False)

    def _idle(self) -> None:
        self.worker = None
        self.set_enabled(True)

    def save_model(self, path: str | Path) -> Path:
        """Save the trained model as ``STEM.safetensors`` + ``STEM.json`` and refresh model lists."""
        if self.result is None:
            raise CardiosegError("nothing to save: train a model first")
        path = Path(path)
        check_save_name(path)
        self.result.card.name = path.name.removesuffix(".json").removesuffix(".safetensors")
        saved = self.result.save(path)
        ui.refresh_model_lists(self._viewer)
        self._on_saved()
        self._status.value = f"saved {saved.name}"
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

    def export(self) -> None:
        """Export the trained model as a bioimage.io package (asks the licence if it has none)."""
        if self.result is None:
            ui.report_error(CardiosegError("nothing to export: train a model first"))
            return
        result = self.result
        worker = export_model(self, self.native, (result.model, result.card), result.card,
                              self._show, self._idle)
        if worker is not None:
            self.worker = worker
            self.set_enabled(False)

    def _show(self, progress: Progress) -> None:
        self._status.value = progress.message

    def reset(self) -> None:
        """Forget the trained model: the next Train starts from the "start from" choice."""
        self._result, self.earlier = None, []
        self._status.value = ""
        self.set_enabled(False)
        self._on_changed()
