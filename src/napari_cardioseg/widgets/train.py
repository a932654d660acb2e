"""Train from scribbles: paint strokes on a Labels layer, click Train, watch a live prediction.

The trainer (:class:`core.train.TrainSession`) runs in a worker; its previews are written into a
"prediction (live)" Labels layer for the part of the image currently in view. Strokes painted
while training runs are picked up by the next steps. Training again continues from the last
model until "Reset model" is clicked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from qtpy.QtWidgets import QFileDialog

from ..core.errors import CardiosegError
from ..core.models import list_models, load_model, user_models_dir
from ..core.nets import ARCHITECTURES
from ..core.predict import predict_generator, probabilities_to_labels
from ..core.train import DEFAULT_ARCH, TrainProgress, TrainSession
from ._common import output_layer_kwargs, report_error, show_info, spatial_scale, start_generator

if TYPE_CHECKING:
    import napari

SCRATCH = "from scratch: "
LIVE = "prediction (live)"
VIEW_HALF = 256  # preview half-width in pixels around the view centre (YX)
VIEW_HALF_Z = 8  # preview half-depth of a 3D sub-volume (3D models)


def _convention(class_names: list[str]) -> str:
    painted = ", ".join(f"{i + 1} = {name}" for i, name in enumerate(class_names))
    return f"Paint: {painted}, … (0 = unpainted, ignored)"


class TrainWidget(Container):
    """Train or fine-tune a model from scribbles painted on a Labels layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._image = ComboBox(label="image", choices=self._layers(Image))
        self._scribbles = ComboBox(label="scribbles", choices=self._layers(Labels))
        self._new = PushButton(text="New scribbles layer")
        self._help = Label(value=_convention(["background", "class 1", "class 2"]))
        self._init = ComboBox(label="start from", choices=self._init_choices)
        self._budget = SpinBox(label="budget", value=100, min=1, max=1_000_000)
        self._unit = ComboBox(label="budget unit", choices=["steps", "seconds"], value="steps")
        self._freeze = CheckBox(text="freeze encoder (faster)")
        self._train = PushButton(text="Train")
        self._stop = PushButton(text="Stop", enabled=False)
        self._progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self._loss = Label(value="loss: –")
        self._predict = PushButton(text="Predict whole image", enabled=False)
        self._save = PushButton(text="Save model…", enabled=False)
        self._reset = PushButton(text="Reset model", enabled=False)
        super().__init__(widgets=[
            self._image, self._scribbles, self._new, self._help, self._init, self._budget,
            self._unit, self._freeze, self._train, self._stop, self._progress, self._loss,
            self._predict, self._save, self._reset,
        ])
        self.worker = None
        self.session: TrainSession | None = None
        self.result = None  # TrainResult of the last run; training continues from it
        self._source: Image | None = None
        self._view: tuple[slice, ...] | None = None
        self._new.changed.connect(self.new_scribbles)
        self._init.changed.connect(self._show_classes)
        self._train.changed.connect(self.train)
        self._stop.changed.connect(self.stop)
        self._predict.changed.connect(self.predict_whole)
        self._save.changed.connect(self._save_dialog)
        self._reset.changed.connect(self.reset)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._image.reset_choices)
            event.connect(self._scribbles.reset_choices)
        napari_viewer.dims.events.current_step.connect(self._update_view)
        napari_viewer.camera.events.center.connect(self._update_view)

    def _layers(self, kind: type) -> Any:
        def choices(_widget: Any = None) -> list[tuple[str, Any]]:
            return [(layer.name, layer) for layer in self._viewer.layers
                    if isinstance(layer, kind) and layer.data.ndim in (2, 3)
                    and not getattr(layer, "rgb", False)]
        return choices

    def _init_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        scratch = [(f"{SCRATCH}{name}", f"{SCRATCH}{name}") for name in
                   [DEFAULT_ARCH, *(a for a in ARCHITECTURES if a != DEFAULT_ARCH)]]
        return [*[(f"{e.name} ({e.source})", str(e.path)) for e in list_models()], *scratch]

    def _show_classes(self, value: str | None = None) -> None:
        names = ["background", "class 1", "class 2"]
        if self.result is not None:
            names = self.result.card.class_names
        elif value and not value.startswith(SCRATCH):
            try:
                names = load_model(value)[1].class_names
            except CardiosegError as exc:
                report_error(exc)
        self._help.value = _convention(names)

    def new_scribbles(self) -> Labels | None:
        """Add an empty Labels layer on top of the chosen image, ready to paint background."""
        image = self._image.value
        if image is None:
            report_error(CardiosegError("add or choose an image layer first"))
            return None
        layer = self._viewer.add_labels(
            np.zeros(image.data.shape, np.uint8),
            **output_layer_kwargs(image, f"{image.name} scribbles"),
        )
        layer.mode = "paint"
        layer.selected_label = 1
        self._scribbles.value = layer
        return layer

    def _update_view(self, _event: Any = None) -> None:
        """Remember the image region in view (main thread); the trainer reads it for previews."""
        image = self._source
        if image is None:
            return
        world = list(self._viewer.dims.point)
        displayed = list(self._viewer.dims.displayed)
        centre = list(self._viewer.camera.center)[-len(displayed):]
        for axis, value in zip(displayed, centre, strict=True):
            world[axis] = value
        point = image.world_to_data(world[-image.ndim:])
        halves = [VIEW_HALF, VIEW_HALF] if image.ndim == 2 else [0, VIEW_HALF, VIEW_HALF]
        if image.ndim == 3 and self.session is not None and self.session.ndim == 3:
            halves[0] = VIEW_HALF_Z
        region = []
        for p, half, n in zip(point, halves, image.data.shape, strict=True):
            c = int(np.clip(round(p), 0, n - 1))
            region.append(slice(max(c - half, 0), min(c + half + 1, n)))
        self._view = tuple(region)

    def _view_region(self) -> tuple[slice, ...] | None:
        return self._view

    def _budget_kwargs(self) -> dict:
        if self._unit.value == "steps":
            return {"steps": int(self._budget.value)}
        return {"time_budget": float(self._budget.value)}

    def train(self) -> None:
        """Start training in a worker (continuing from the current model, if any)."""
        image, scribbles = self._image.value, self._scribbles.value
        try:
            if image is None or scribbles is None:
                raise CardiosegError("choose an image layer and a scribbles Labels layer")
            choice = self._init.value or f"{SCRATCH}{DEFAULT_ARCH}"
            if self.result is not None:
                start = {"init": (self.result.model, self.result.card)}
            elif choice.startswith(SCRATCH):
                start = {"arch": choice[len(SCRATCH):]}
            else:
                start = {"init": choice}
            self.session = TrainSession(
                [np.asarray(image.data)], [scribbles.data], freeze_encoder=self._freeze.value,
                preview=self._view_region, pixel_size=spatial_scale(image), **start,
                **self._budget_kwargs(),
            )
        except CardiosegError as exc:
            report_error(exc)
            return
        self._source = image
        self._update_view()
        self._live_layer(image)
        self._progress.max = self.session.steps or int(self.session.time_budget)
        self._progress.value = 0
        self._set_running(True)
        self.worker = start_generator(self.session.run, owner=self, on_yield=self._on_progress,
                                      on_finish=self._finished)

    def _live_layer(self, image: Image) -> Labels:
        if LIVE in self._viewer.layers:
            layer = self._viewer.layers[LIVE]
            if layer.data.shape == image.data.shape:
                layer.scale, layer.translate = image.scale, image.translate
                return layer
            self._viewer.layers.remove(layer)
        layer = self._viewer.add_labels(np.zeros(image.data.shape, np.uint8),
                                        opacity=0.5, **output_layer_kwargs(image, LIVE))
        self._viewer.layers.selection.active = self._scribbles.value  # keep painting strokes
        return layer

    def _on_progress(self, progress: TrainProgress) -> None:
        total = progress.total_steps
        self._progress.value = min(progress.step if total else int(progress.elapsed),
                                   self._progress.max)
        self._loss.value = f"step {progress.step}  loss {progress.loss:.4f}  " \
                           f"{progress.elapsed:.0f} s"
        if progress.preview is not None and LIVE in self._viewer.layers:
            layer = self._viewer.layers[LIVE]
            layer.data[progress.preview_region] = progress.preview
            layer.refresh()

    def stop(self) -> None:
        """Stop training after the current step; the best model so far is kept."""
        if self.worker is not None:
            self.worker.quit()

    def _finished(self) -> None:
        if self.session is not None and self.session.losses:
            self.result = self.session.best()
            self._show_classes()
        self.worker = None
        self._set_running(False)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

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
        """Predict the whole image with the trained model (inference engine, in a worker)."""
        image = self._image.value
        if self.result is None or image is None:
            report_error(CardiosegError("train a model and choose an image first"))
            return
        self._set_running(True)
        self._train.enabled = self._stop.enabled = False
        self.worker = start_generator(
            predict_generator, image.data, self.result.model, self.result.card, owner=self,
            on_return=lambda prob: self._viewer.add_labels(
                probabilities_to_labels(prob), **output_layer_kwargs(image, f"{image.name} labels")
            ),
            on_finish=self._finished_predict,
        )

    def _finished_predict(self) -> None:
        self.worker = None
        self._set_running(False)

    def save_model(self, path: str | Path) -> Path:
        """Save the trained model as ``STEM.safetensors`` + ``STEM.json`` and refresh model lists."""
        if self.result is None:
            raise CardiosegError("nothing to save: train a model first")
        path = Path(path)
        self.result.card.name = path.name.removesuffix(".json").removesuffix(".safetensors")
        saved = self.result.save(path)
        for dock in getattr(self._viewer.window, "_dock_widgets", {}).values():
            inner = dock.widget()
            inner = getattr(inner, "_magic_widget", inner)
            if hasattr(inner, "refresh_models"):
                inner.refresh_models()
        self._init.reset_choices()
        show_info(f"saved model {saved}")
        return saved

    def _save_dialog(self) -> None:
        name = self.result.card.name if self.result is not None else "model"
        default = str(user_models_dir(create=True) / f"{name}.json")
        path, _ = QFileDialog.getSaveFileName(self.native, "Save model", default,
                                              "Model card (*.json)")
        if path:
            try:
                self.save_model(path)
            except CardiosegError as exc:
                report_error(exc)
