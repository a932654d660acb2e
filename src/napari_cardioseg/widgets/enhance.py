"""Enhance contrast: pick an image layer and a method; Apply adds a new enhanced layer.

The method list and one control per parameter (range, default, tooltip) are built from the contrast
registry, :data:`napari_cardioseg.core.contrast.METHODS`; only the chosen method's controls are shown.
The work runs in a worker through :func:`core.contrast.enhance_steps`, whose progress drives the bar;
histograms of the input and the result are drawn below the controls.
"""

from __future__ import annotations

from collections.abc import Generator
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    ProgressBar,
    PushButton,
    SpinBox,
    Widget,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image

from ..core.contrast import (
    DEFAULT_METHOD,
    METHODS,
    PER_SLICE_HELP,
    Param,
    all_params,
    enhance_steps,
    output_limits,
)
from ..core.errors import CardiosegError
from ..core.progress import Progress
from ._common import layer_choice, output_layer_kwargs, report_error
from .workers import start_generator

if TYPE_CHECKING:
    import napari

HISTOGRAM_SAMPLES = 1_000_000
"""At most this many pixels feed each histogram (an even stride through the image)."""


def _sentence(text: str) -> str:
    """``text`` as a tooltip sentence: capitalised, ending with a full stop."""
    return text[:1].upper() + text[1:] + "."


def _sample(data: np.ndarray) -> np.ndarray:
    """Finite values of ``data``, thinned to about :data:`HISTOGRAM_SAMPLES`."""
    flat = np.ravel(data)[:: max(1, data.size // HISTOGRAM_SAMPLES)]
    return flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat


class ParamControl(Container):
    """The control for one registry :class:`~napari_cardioseg.core.contrast.Param`.

    A spin box limited to the parameter's range and starting at its default; a parameter whose default
    is automatic also gets an "auto" box that, while ticked, gives ``None`` and disables the spin box.
    """

    def __init__(self, param: Param) -> None:
        self.param = param
        tooltip = _sentence(param.describe())
        low = param.low + param.step if param.low_open else param.low
        start = param.high if param.default is None else param.default
        self.spin: FloatSpinBox | SpinBox
        if param.type is float:
            self.spin = FloatSpinBox(value=start, min=low, max=param.high, step=param.step, tooltip=tooltip)
        else:
            self.spin = SpinBox(value=int(start), min=low, max=param.high, step=param.step, tooltip=tooltip)
        self._automatic = param.default is None
        self.auto = CheckBox(text="auto", value=True, tooltip=f"Automatic: {param.auto}.",
                             visible=self._automatic)
        label = param.name.replace("_", " ") + (f" ({param.unit})" if param.unit else "")
        super().__init__(widgets=[self.auto, self.spin], layout="horizontal", labels=False, label=label,
                         tooltip=tooltip)
        self.margins = (0, 0, 0, 0)
        self.auto.changed.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        self.spin.enabled = not (self._automatic and self.auto.value)

    @property
    def value(self) -> float | int | None:
        """The chosen value, ``None`` for automatic."""
        return None if self._automatic and self.auto.value else self.param.type(self.spin.value)


def _enhanced(data: Any, method: str,
              **options: Any) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray]]:
    """Worker side: read the layer (a lazy one too), enhance it; return before and after."""
    before = np.asarray(data)
    after = yield from enhance_steps(before, method, **options)
    return before, after


class EnhanceWidget(Container):
    """Contrast enhancement of an image layer into a new layer, with before/after histograms."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._image = layer_choice(napari_viewer, Image, "image",
                                   "The image layer to enhance; it is left unchanged.")
        methods = "\n".join(f"{m.name}: {m.help}" for m in METHODS.values())
        self._method = ComboBox(label="method", choices=list(METHODS), value=DEFAULT_METHOD,
                                tooltip=f"How the grey levels are remapped.\n{methods}")
        self.controls = {name: ParamControl(param) for name, param in all_params().items()}
        self._per_slice = CheckBox(text="per slice (3D stacks)", tooltip=_sentence(PER_SLICE_HELP))
        self._apply = PushButton(text="Apply", tooltip="Add the enhanced image as a new layer.")
        self._progress = ProgressBar(label="progress", value=0, visible=False,
                                     tooltip="Slices enhanced so far.")
        widgets: list[Widget] = [self._image, self._method, *self.controls.values(), self._per_slice,
                                 self._apply, self._progress]
        super().__init__(widgets=widgets)
        self.figure = Figure(figsize=(3.5, 3.0), tight_layout=True)
        self._canvas = FigureCanvasQTAgg(self.figure)
        self.native.layout().addWidget(self._canvas)
        self.worker = None
        self._method.changed.connect(self._show_parameters)
        self._apply.changed.connect(self.apply)
        self._show_parameters()

    def _show_parameters(self) -> None:
        names = {p.name for p in METHODS[self._method.value].params}
        for name, control in self.controls.items():
            control.visible = name in names

    def parameters(self) -> dict[str, float | int | None]:
        """Return the chosen method's parameter values, as its registry row names them."""
        return {p.name: self.controls[p.name].value for p in METHODS[self._method.value].params}

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
        self._apply.enabled = False
        self._progress.visible = True
        params: dict[str, Any] = self.parameters()  # the method's own keywords, checked by its row
        self.worker = start_generator(
            partial(_enhanced, per_slice=self._per_slice.value, **params), layer.data, method,
            owner=self, on_yield=self._show_progress,
            on_return=lambda pair: self._add_result(layer, method, *pair), on_finish=self._finished,
        )

    def _show_progress(self, progress: Progress) -> None:
        self._progress.max = max(progress.total or 0, 1)
        self._progress.value = progress.done
        self._progress.label = progress.stage

    def _finished(self) -> None:
        self._apply.enabled = True
        self._progress.visible = False

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
