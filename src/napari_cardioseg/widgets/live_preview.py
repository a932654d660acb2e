"""The Train widget's live preview: the layers the trainer's previews are copied into.

The trainer predicts only the part of the image in view (:data:`VIEW_HALF` pixels around the view
centre; a sub-volume :data:`VIEW_HALF_Z` slices deep for 3D nets), in its worker; this object keeps
that region current from the viewer's camera and slider (main thread) and writes each yielded
preview into a Labels layer (:data:`LIVE`) and its uncertainty (0 sure, 255 all classes equally
likely: :func:`core.predict.probabilities_to_uncertainty`) into an Image layer (:data:`UNCERTAIN`),
which shows where the next strokes help most.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels

from ..core.train import TrainProgress, TrainResult
from ..core.train_preview import view_prediction_steps
from . import _common as ui
from . import workers

if TYPE_CHECKING:
    import napari

LIVE = "prediction (live)"
UNCERTAIN = "uncertainty (live)"
VIEW_HALF = 256  # preview half-width in pixels around the view centre (YX)
VIEW_HALF_Z = 8  # preview half-depth of a 3D sub-volume (3D models)


class LivePreview:
    """The live prediction layer of one training run and the image region in view."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.source: Image | None = None
        self.volumetric = False  # the net is 3D: previews are sub-volumes
        self.view: tuple[slice, ...] | None = None
        self.worker: Any = None  # the preview after Undo, while it runs
        self._after_undo: object | None = None  # which after-Undo preview may still be shown
        viewer.dims.events.current_step.connect(self.update_view)
        viewer.camera.events.center.connect(self.update_view)

    def start(self, image: Image, active: Labels | None) -> Labels:
        """Reuse or add the live layers on ``image``; ``active`` stays the selected layer."""
        self.source, self.volumetric = image, False
        self._after_undo = None  # training previews from now on: a late after-Undo one is stale
        self.update_view()
        self._layer(UNCERTAIN, image, lambda data, place: self._viewer.add_image(
            data, colormap="inferno", contrast_limits=(0, 255), blending="additive",
            opacity=0.6, **place))
        layer = self._layer(LIVE, image, lambda data, place: self._viewer.add_labels(
            data, opacity=0.5, colormap=ui.prediction_colormap(), **place))
        if active is not None:
            self._viewer.layers.selection.active = active  # keep painting strokes
        return layer

    def _layer(self, name: str, image: Image, add: Any) -> Any:
        """Return the layer ``name`` on ``image``: reused when its shape fits, else (re)added."""
        if name in self._viewer.layers:
            layer = self._viewer.layers[name]
            if layer.data.shape == image.data.shape:
                ui.place_on(layer, image)
                return layer
            self._viewer.layers.remove(layer)
        place = ui.output_layer_kwargs(image, name, {ui.RESULT_KEY: "live preview"})
        return add(np.zeros(image.data.shape, np.uint8), place)

    def update_view(self, _event: Any = None) -> None:
        """Remember the image region in view; the trainer reads :attr:`view` for its previews."""
        image = self.source
        if image is None:
            return
        halves = [VIEW_HALF, VIEW_HALF] if image.ndim == 2 else [0, VIEW_HALF, VIEW_HALF]
        if image.ndim == 3 and self.volumetric:
            halves[0] = VIEW_HALF_Z
        self.view = ui.region_in_view(self._viewer, image, halves)

    def show(self, progress: TrainProgress) -> None:
        """Copy a yielded preview (and its uncertainty) into the live layers that still exist."""
        if progress.preview is not None and progress.preview_region is not None:
            self._put(progress.preview_region, progress.preview, progress.uncertainty)

    def _put(self, region: tuple[slice, ...], labels: np.ndarray,
             uncertainty: np.ndarray | None) -> None:
        if LIVE in self._viewer.layers:
            layer = self._viewer.layers[LIVE]
            layer.data[region] = labels
            layer.refresh()
        if uncertainty is not None and UNCERTAIN in self._viewer.layers:
            layer = self._viewer.layers[UNCERTAIN]
            layer.data[region] = np.rint(uncertainty * 255)
            layer.refresh()

    def clear(self) -> None:
        """Blank the live layers (the model they showed was undone or reset)."""
        for name in (LIVE, UNCERTAIN):
            if name in self._viewer.layers:
                layer = self._viewer.layers[name]
                layer.data[...] = 0
                layer.refresh()

    def follow(self, result: TrainResult | None, owner: Any) -> None:
        """After Undo or Reset: show ``result``'s answer on the view (in a worker), or blank."""
        self.clear()
        self._after_undo = ticket = object()
        if result is None or self.source is None or self.view is None:
            return
        model = copy.deepcopy(result.model)  # a Train click may go on training the original
        self.worker = workers.start_generator(
            view_prediction_steps, ui.full_resolution(self.source), self.view, model, result.card,
            owner=owner, activity=f"Preview ({result.card.name})",
            on_return=lambda found: self._write(found, ticket), on_finish=self._idle)

    def _write(self, found: tuple[tuple[slice, ...], np.ndarray, np.ndarray] | None,
               ticket: object) -> None:
        if found is not None and ticket is self._after_undo:  # not overtaken by Train or Undo
            self._put(*found)

    def _idle(self) -> None:
        self.worker = None
