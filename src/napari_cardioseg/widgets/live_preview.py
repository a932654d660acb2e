"""The Train widget's live preview: a Labels layer the trainer's previews are copied into.

The trainer predicts only the part of the image in view (:data:`VIEW_HALF` pixels around the view
centre; a sub-volume :data:`VIEW_HALF_Z` slices deep for 3D nets), in its worker; this object keeps
that region current from the viewer's camera and slider (main thread) and writes each yielded
preview into the layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels

from ..core.train import TrainProgress
from . import _common as ui

if TYPE_CHECKING:
    import napari

LIVE = "prediction (live)"
VIEW_HALF = 256  # preview half-width in pixels around the view centre (YX)
VIEW_HALF_Z = 8  # preview half-depth of a 3D sub-volume (3D models)


class LivePreview:
    """The live prediction layer of one training run and the image region in view."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.source: Image | None = None
        self.volumetric = False  # the net is 3D: previews are sub-volumes
        self.view: tuple[slice, ...] | None = None
        viewer.dims.events.current_step.connect(self.update_view)
        viewer.camera.events.center.connect(self.update_view)

    def start(self, image: Image, active: Labels | None) -> Labels:
        """Reuse or add the live layer on ``image``; ``active`` stays the selected layer."""
        self.source, self.volumetric = image, False
        self.update_view()
        if LIVE in self._viewer.layers:
            layer = self._viewer.layers[LIVE]
            if layer.data.shape == image.data.shape:
                layer.scale, layer.translate = image.scale, image.translate
                return layer
            self._viewer.layers.remove(layer)
        layer = self._viewer.add_labels(np.zeros(image.data.shape, np.uint8), opacity=0.5,
                                        colormap=ui.prediction_colormap(),
                                        **ui.output_layer_kwargs(image, LIVE))
        self._viewer.layers.selection.active = active  # keep painting strokes
        return layer

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
        """Copy a yielded preview into the live layer (if it still exists)."""
        if progress.preview is not None and LIVE in self._viewer.layers:
            layer = self._viewer.layers[LIVE]
            layer.data[progress.preview_region] = progress.preview
            layer.refresh()
