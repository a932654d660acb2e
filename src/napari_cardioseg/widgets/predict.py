"""Predict: run a pretrained or user model on an image layer, in a worker with a progress bar.

Results are a Labels layer (0 background, 1 first class, ...) and, optionally, an Image layer of
foreground probabilities, named after the image and the model and placed on the input with its
scale and translate. The model is loaded, run and its layers built in the worker
(:mod:`.predict_jobs`; ONNX Runtime once the model's graph is cached); large layers stream into a
zarr store. "Export to bioimage.io…" writes the chosen model as a bioimage.io package.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Layer
from qtpy.QtWidgets import QFileDialog

from ..core.device import DEVICES
from ..core.errors import CardiosegError
from ..core.models import list_models, read_card
from ..core.progress import Progress
from ._common import layer_choice, report_error, show_progress
from .model_export import export_model
from .predict_jobs import Stream, done_message, gui_backend, is_large, predict_layers, stream_done_message
from .workers import start_generator, warm_up_imports

if TYPE_CHECKING:
    import napari

LOAD_FILE = "Load model file…"
PACKAGE_SUFFIXES = (".zip", ".yaml")  # bioimage.io packages (rdf.yaml / *.bioimageio.yaml)


class PredictWidget(Container):
    """Model prediction on an image layer; tile 0 means automatic."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        warm_up_imports()  # the first run's heavy imports, while the user chooses
        self._files: dict[str, str] = {}  # label -> card path of models loaded from files
        self._image = layer_choice(napari_viewer, Image, "image", "The image layer to segment.")
        self._model = ComboBox(
            label="model", choices=self._model_choices,
            tooltip="The trained network to run: shipped (pretrained) models, your saved (user) "
                    "models, or a model file from disk.")
        self._tile = SpinBox(
            label="tile (0 = auto)", value=0, min=0, max=4096, step=32,
            tooltip="Large images are cut into square tiles of this many pixels, predicted one "
                    "by one and stitched; 0 picks a size that fits memory.")
        self._overlap = FloatSpinBox(
            label="overlap", value=0.25, min=0.0, max=0.5, step=0.05,
            tooltip="Fraction of a tile shared with its neighbour; the overlaps are blended so "
                    "tile edges do not show. More overlap: smoother, slower.")
        self._batch = SpinBox(
            label="batch", value=4, min=1, max=256,
            tooltip="Tiles sent to the network at once: more is faster but needs more memory.")
        self._device = ComboBox(
            label="device", choices=list(DEVICES), value="auto",
            tooltip="Where to compute: auto uses a graphics card (GPU) when there is one, else "
                    "the processor (CPU).")
        self._flips = CheckBox(text="average over flips (4× slower)",
                               tooltip="Predict the image also mirrored and average the results "
                                       "(test-time augmentation): smoother, usually slightly "
                                       "better masks.")
        self._prob = CheckBox(
            text="add probability layer",
            tooltip="Also add the network's confidence (0 to 1) per pixel as an image layer.")
        self._run = PushButton(text="Run", tooltip="Predict the image with the model.")
        self._stop = PushButton(text="Stop", enabled=False,
                                tooltip="Stop after the current batch of tiles; nothing is added.")
        self._export = PushButton(
            text="Export to bioimage.io…",
            tooltip="Save the chosen model as a bioimage.io package (.zip) that runs in ilastik, "
                    "deepImageJ, BiaPy or Python without this plugin.")
        self._progress = ProgressBar(label="tiles", value=0, min=0, max=1,
                                     tooltip="Tiles predicted so far.")
        self._status = Label(value="", tooltip="What the prediction is doing.")
        super().__init__(widgets=[self._image, self._model, self._tile, self._overlap, self._batch,
                                  self._device, self._flips, self._prob, self._run, self._stop,
                                  self._progress, self._status, self._export])
        self.worker = None
        self.stream: Stream | None = None  # the last large-layer prediction
        self.export_worker = None
        self._stopping = False
        self._refreshing = False
        self._last_model = self._model.value
        self._model.changed.connect(self._on_model_changed)
        self._run.changed.connect(self.run)
        self._stop.changed.connect(self.stop)
        self._export.changed.connect(self.export)

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        entries = [(f"{e.name} ({e.source})", str(e.path)) for e in list_models()]
        return [*entries, *self._files.items(), (LOAD_FILE, LOAD_FILE)]

    def refresh_models(self) -> None:
        """Re-read pretrained and user models (e.g. after the Train widget saved one)."""
        self._refreshing = True
        try:
            self._model.reset_choices()
            models = [c for c in self._model.choices if c != LOAD_FILE]
            if self._model.value == LOAD_FILE and models:
                self._model.value = models[0]
        finally:
            self._refreshing = False

    def load_model_file(self, path: str | Path) -> None:
        """Add a model file to the list and select it.

        A ``.json`` card, ``.safetensors`` or a bioimage.io ``.zip`` / ``rdf.yaml``.
        """
        path = Path(path)
        if path.suffix.lower() in PACKAGE_SUFFIXES:
            label, value = f"{path.stem} (bioimage.io)", str(path)
        else:
            value = str(path.with_suffix(".json"))
            label = f"{path.stem} (file)"
        self._files[label] = value
        self.refresh_models()
        self._model.value = value

    def _on_model_changed(self, value: str) -> None:
        if value != LOAD_FILE:
            self._last_model = value
            return
        if self._refreshing:
            return
        path, _ = QFileDialog.getOpenFileName(
            self.native, "Load model", "", "Model files (*.json *.safetensors *.zip *.yaml)")
        if path:
            self.load_model_file(path)
        else:
            self._model.value = self._last_model

    def run(self) -> None:
        """Load the chosen model and predict the chosen layer, both in a worker."""
        layer = self._image.value
        try:
            if layer is None:
                raise CardiosegError("add or choose an image layer first")
            if self._model.value in (None, LOAD_FILE):
                raise CardiosegError("choose a model (or load a model file)")
        except CardiosegError as exc:
            report_error(exc)
            return
        if is_large(layer) and Path(self._model.value).suffix.lower() not in PACKAGE_SUFFIXES:
            self._stream(layer)
            return
        name = Path(self._model.value).stem
        self.stream = None
        self._run.enabled, self._stop.enabled = False, True
        self._status.value = f"predicting with {name}"
        self.worker = start_generator(
            predict_layers, self._model.value, layer, tile=self._tile.value or None,
            overlap=self._overlap.value, batch=self._batch.value, device=self._device.value,
            flips=self._flips.value, backend=gui_backend(self._model.value), probabilities=self._prob.value,
            owner=self,
            activity=f"Predict ({name})",
            on_yield=self._on_progress, on_return=self._add_result,
            on_finish=self._finished,
        )

    def _stream(self, layer: Image) -> None:
        """Predict a large layer into a zarr store shown as a lazy layer that fills in."""
        try:
            stream = Stream(layer, self._model.value, self._tile.value or None, self._overlap.value)
        except CardiosegError as exc:
            report_error(exc)
            return
        self._viewer.add_layer(stream.layer)
        self._run.enabled, self._stop.enabled = False, True
        self._status.value = f"predicting into {stream.path.name}"
        self.stream = stream

        shown = [0.0]

        def on_block(progress: Progress) -> None:  # redraw the layer at most every 0.2 s
            self._on_progress(progress)
            if time.perf_counter() - shown[0] > 0.2 or progress.done == progress.total:
                stream.layer.refresh()
                shown[0] = time.perf_counter()

        self.worker = start_generator(
            stream.steps, batch=self._batch.value, device=self._device.value,
            flips=self._flips.value, backend=gui_backend(self._model.value), owner=self,
            activity=f"Predict ({stream.card.name})", on_yield=on_block,
            on_return=lambda p: setattr(self._status, "value", stream_done_message(p, self._prob.value)),
            on_finish=self._finished)

    def export(self) -> None:
        """Ask the licence (if the card has none) and where, then export the chosen model."""
        try:
            if self._model.value in (None, LOAD_FILE):
                raise CardiosegError("choose a model to export")
            if Path(self._model.value).suffix.lower() in PACKAGE_SUFFIXES:
                raise CardiosegError("this model is a bioimage.io package already")
            card = read_card(self._model.value)
        except CardiosegError as exc:
            report_error(exc)
            return
        worker = export_model(self, self.native, self._model.value, card, self._on_progress,
                              lambda: setattr(self._export, "enabled", True))
        if worker is not None:
            self._export.enabled = False
            self._status.value = f"exporting {card.name}"
            self.export_worker = worker

    def stop(self) -> None:
        """Ask the running prediction to stop after its current batch."""
        if self.worker is not None:
            self._stopping = True
            self.worker.quit()

    def _on_progress(self, progress: Progress) -> None:
        show_progress(self._progress, progress)
        if progress.message:
            self._status.value = progress.message

    def _finished(self) -> None:
        if self._stopping and self.stream is not None:
            self._status.value = f"stopped: the finished blocks stay in {self.stream.path}"
        elif self._stopping:
            self._status.value = "stopped: nothing was added"
            self._progress.max, self._progress.value = 1, 0
        self._stopping = False
        self._run.enabled, self._stop.enabled = True, False
        self.worker = None

    def _add_result(self, layers: list[Layer]) -> None:
        """Add the layers made in the worker (labels, then probabilities if asked for)."""
        self._stopping = False  # finished before a late Stop took effect
        self._status.value = done_message(layers[0])
        for new in layers:
            self._viewer.add_layer(new)
