"""Pixel size: the one place to say how large a layer's pixels are.

It sets the layer's ``scale`` (µm per pixel along Y and X, and the Z step of a stack), marks the layer
calibrated in ``layer.metadata`` (:data:`napari_cardioseg.core.units.CALIBRATED_KEY`), and can do the same
for the other layers of the same shape (predictions, scribbles, enhanced copies) so they stay aligned.
Lengths are typed as ``0.1`` or ``0,1`` (decimal comma) and read by :func:`core.units.parse_length`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, Container, Label, LineEdit, PushButton
from napari.layers import Image, Labels, Layer

from ..core.errors import CardiosegError
from ..core.units import CALIBRATED_KEY, is_calibrated, parse_length
from ._common import layer_choice, report_error, show_info

if TYPE_CHECKING:
    import napari


def _spatial_shape(layer: Layer, ndim: int) -> tuple[int, ...]:
    """Return the last ``ndim`` axes of the layer's data shape (the colour axis of RGB images left out)."""
    shape = tuple(layer.data.shape)
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return shape[-ndim:] if len(shape) >= ndim else ()


def _sizes_text(sizes: tuple[float, ...]) -> str:
    """``Z 0.3, Y 0.1, X 0.1`` for the last two or three axes."""
    return ", ".join(f"{axis} {s:g}" for axis, s in zip("ZYX"[-len(sizes) :], sizes, strict=True))


def _describe(layer: Layer) -> str:
    """``calibrated: Z 0.3, Y 0.1, X 0.1 µm`` or a note that the layer is in pixels."""
    spatial = min(layer.ndim, 3)
    scale = tuple(float(s) for s in layer.scale[-spatial:])
    if not is_calibrated(layer.metadata, scale):
        return "not calibrated: sizes are in pixels; type the pixel size and click Set"
    return f"calibrated: {_sizes_text(scale)} µm"


class PixelSizeWidget(Container):
    """Set the pixel size (layer scale, µm) of an image or labels layer and mark it calibrated."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._layer = layer_choice(napari_viewer, (Image, Labels), "layer",
                                   "The image (or labels) layer whose pixel size to set.")
        self._status = Label(value="")
        self._status.native.setWordWrap(True)
        self._xy = LineEdit(label="pixel size (µm)",
                            tooltip="Width of one pixel in micrometres, the same along Y and X. Type 0.1 or "
                            "0,1; a unit may follow (0.1 µm, 8 nm).")
        self._z = LineEdit(label="Z step (µm)",
                           tooltip="Distance between the slices of a stack in micrometres (0.1 or 0,1).")
        self._same_shape = CheckBox(
            text="also set layers of the same shape", value=True,
            tooltip="Give the same pixel size to every other image or labels layer of the same size "
            "(predictions, scribbles, enhanced copies), so they stay on top of this one.",
        )
        self._set = PushButton(text="Set pixel size", tooltip="Set the layer scale to these sizes.")
        super().__init__(widgets=[self._layer, self._status, self._xy, self._z, self._same_shape, self._set])
        self._layer.changed.connect(self.refresh)
        self._set.changed.connect(self.apply)
        for field in (self._xy, self._z):
            field.native.returnPressed.connect(self.apply)
        self.refresh()

    def refresh(self) -> None:
        """Show the chosen layer's calibration and put its current sizes in the fields."""
        layer = self._layer.value
        self._z.visible = layer is not None and layer.ndim >= 3
        if layer is None:
            self._status.value = "add an image layer first"
            return
        self._status.value = _describe(layer)
        self._xy.value = str(float(layer.scale[-1]))  # str(float) reads back to the same number
        self._z.value = str(float(layer.scale[-3])) if layer.ndim >= 3 else ""

    def apply(self) -> None:
        """Parse the fields and set the scale (and calibration flag) of the layer and its look-alikes."""
        layer = self._layer.value
        try:
            if layer is None:
                raise CardiosegError("add or choose an image layer first")
            xy = parse_length(self._xy.value, "pixel size")
            sizes = (parse_length(self._z.value, "Z step"), xy, xy) if layer.ndim >= 3 else (xy, xy)
        except CardiosegError as exc:
            report_error(exc)
            return
        spatial = len(sizes)
        targets = [layer]
        if self._same_shape.value:
            shape = _spatial_shape(layer, spatial)
            targets += [other for other in self._layer.choices if other is not None and other is not layer
                        and min(other.ndim, 3) == spatial and _spatial_shape(other, spatial) == shape]
        for target in targets:
            target.metadata[CALIBRATED_KEY] = True  # first: the scale's listeners read it
            target.scale = (*tuple(target.scale)[:-spatial], *sizes)
        others = f" and {len(targets) - 1} layer(s) of the same shape" if len(targets) > 1 else ""
        show_info(f"pixel size of {layer.name!r}{others}: {_sizes_text(sizes)} µm")
        self.refresh()
