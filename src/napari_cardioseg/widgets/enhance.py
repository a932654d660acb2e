"""Enhance contrast: pick an image layer and a method; Apply adds a new enhanced layer.

The work runs in a worker through :func:`core.contrast.enhance_steps`; histograms of the input and the
result are drawn below the controls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image

from ..core.contrast import METHODS, enhance_steps, output_limits
from ..core.errors import CardiosegError
from ._common import output_layer_kwargs, report_error, start_generator

if TYPE_CHECKING:
    import napari

HISTOGRAM_SAMPLES = 1_000_000
"""At most this many pixels feed each histogram (an even stride through the image)."""


def _sample(data: np.ndarray) -> np.ndarray:
    """Finite values of ``data``, thinned to about :data:`HISTOGRAM_SAMPLES`."""
    flat = np.ravel(data)[:: max(1, data.size // HISTOGRAM_SAMPLES)]
    return flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat


class EnhanceWidget(Container):
    """Contrast enhancement of an image layer into a new layer, with before/after histograms."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._image = ComboBox(label="image", choices=self._image_layers)
        self._method = ComboBox(label="method", choices=list(METHODS), value="agcwd")
        self._alpha = FloatSpinBox(label="alpha", value=0.5, min=0.05, max=1.0, step=0.05)
        self._n_sigma = FloatSpinBox(label="n sigma", value=3.5, min=1.0, max=10.0, step=0.5)
        self._low = FloatSpinBox(label="low %", value=5.0, min=0.0, max=100.0, step=0.5)
        self._high = FloatSpinBox(label="high %", value=98.0, min=0.0, max=100.0, step=0.5)
        self._per_slice = CheckBox(text="per slice (3D stacks)")
        self._apply = PushButton(text="Apply")
        super().__init__(widgets=[self._image, self._method, self._alpha, self._n_sigma, self._low,
                                  self._high, self._per_slice, self._apply])
        self.figure = Figure(figsize=(3.5, 3.0), tight_layout=True)
        self._canvas = FigureCanvasQTAgg(self.figure)
        self.native.layout().addWidget(self._canvas)
        self.worker = None
        self._method.changed.connect(self._show_parameters)
        self._apply.changed.connect(self.apply)
        napari_viewer.layers.events.inserted.connect(self.reset_choices)
        napari_viewer.layers.events.removed.connect(self.reset_choices)
        self._show_parameters()

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _show_parameters(self) -> None:
        method = self._method.value
        self._alpha.visible = method != "percentile"
        self._n_sigma.visible = method == "agcwd-extended"
        self._low.visible = self._high.visible = method == "percentile"

    def _parameters(self, method: str) -> dict[str, float]:
        if method == "percentile":
            return {"low": self._low.value, "high": self._high.value}
        if method == "agcwd-extended":
            return {"alpha": self._alpha.value, "n_sigma": self._n_sigma.value}
        return {"alpha": self._alpha.value}

    def apply(self) -> None:
        """Enhance the chosen layer in a worker; the result is added as a new layer."""
        layer = self._image.value
        try:
            if layer is None:
                raise CardiosegError("add or choose an image layer first")
            if layer.multiscale or layer.rgb:
                raise CardiosegError(f"layer {layer.name!r} is multiscale or RGB; choose a greyscale image")
        except CardiosegError as exc:
            report_error(exc)
            return
        method = self._method.value
        data = np.asarray(layer.data)
        self._apply.enabled = False
        self.worker = start_generator(
            enhance_steps, data, method, per_slice=self._per_slice.value, **self._parameters(method),
            owner=self, on_return=lambda out: self._add_result(layer, method, data, out),
            on_finish=self._finished,
            total=(data.shape[0] if data.ndim == 3 else 1) + 1,
        )

    def _finished(self) -> None:
        self._apply.enabled = True

    def _add_result(self, layer: Image, method: str, before: np.ndarray, after: np.ndarray) -> None:
        self._viewer.add_image(after, contrast_limits=output_limits(after.dtype), colormap=layer.colormap,
                               **output_layer_kwargs(layer, f"{layer.name} [{method}]"))
        self._plot(before, after)

    def _plot(self, before: np.ndarray, after: np.ndarray) -> None:
        self.figure.clear()
        for row, (title, data) in enumerate((("before", before), ("after", after)), start=1):
            ax = self.figure.add_subplot(2, 1, row)
            counts, edges = np.histogram(_sample(data), bins=128)
            ax.stairs(counts, edges, fill=True)
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_yticks([])
        self._canvas.draw_idle()
