"""Small helpers shared by the widgets (Qt/napari side only); workers are in :mod:`.workers`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np
from magicgui.widgets import ComboBox, ProgressBar, create_widget
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from napari.utils.transforms import Affine

from ..core.colors import prediction_colors, scribble_colors
from ..core.errors import CardiosegError
from ..core.units import CALIBRATED_KEY, is_calibrated

if TYPE_CHECKING:
    import napari

    from ..core.progress import Progress


def report_error(exc: BaseException) -> None:
    """Show an exception as a one-line napari notification (no traceback dump)."""
    if isinstance(exc, CardiosegError):
        show_error(str(exc))
    else:
        show_error(f"{type(exc).__name__}: {exc}")


def layer_choice(viewer: napari.viewer.Viewer, kinds: type | tuple[type, ...], label: str,
                 tooltip: str, *, nullable: bool = False,
                 where: Callable[[Any], bool] | None = None) -> ComboBox:
    """Make a combo box of the viewer's layers of ``kinds``, kept current as layers come and go.

    One layer type without a filter uses napari's own layer-typed choice (what a ``Image``
    annotation gives in magicgui); several types, or ``where``, filter the viewer's layer list.
    ``nullable`` adds an empty choice, selected at first.
    """
    if isinstance(kinds, type) and where is None:
        annotation: Any = Optional[kinds] if nullable else kinds  # noqa: UP045 (runtime type)
        box = cast(ComboBox, create_widget(annotation=annotation, label=label,
                                           options={"tooltip": tooltip}))
    else:
        def layers(_widget: Any = None) -> list[tuple[str, Any]]:
            found: list[Any] = [ly for ly in viewer.layers if isinstance(ly, kinds)]
            return [(ly.name, ly) for ly in found if where is None or where(ly)]

        box = ComboBox(label=label, choices=layers, nullable=nullable, tooltip=tooltip)
        if nullable:
            box.value = None
    for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
        event.connect(box.reset_choices)  # napari does this too once docked
    return box


def is_lazy(layer: Any) -> bool:
    """Tell whether a layer's data is multiscale or not held in memory (zarr, dask)."""
    return bool(layer.multiscale or not isinstance(layer.data, np.ndarray))


def full_resolution(layer: Any) -> Any:
    """Return a layer's full-resolution array (level 0 of multiscale data), lazy or not."""
    return layer.data[0] if layer.multiscale else layer.data


#: ``layer.metadata`` key of the layers this plugin computes (what made them); never strokes
RESULT_KEY = "cardioseg_result"


def spatial_scale(layer: Any) -> tuple[float, ...]:
    """Return the layer's scale restricted to its spatial (last 2 or 3) axes."""
    return tuple(float(s) for s in layer.scale[-layer.data.ndim :])


def calibrated_scale(layer: Any) -> tuple[float, ...] | None:
    """Return the layer's spatial scale when it is a pixel size, else None."""
    scale = spatial_scale(layer)
    return scale if is_calibrated(layer.metadata, scale) else None


def greyscale_data(layer: Any) -> Any:
    """Return the full-resolution array of a greyscale 2D image or 3D stack layer.

    Raises
    ------
    CardiosegError
        Naming the layer, for an RGB image or data with other than 2 or 3 axes.
    """
    if getattr(layer, "rgb", False):
        raise CardiosegError(f"{layer.name!r} is an RGB image; choose a greyscale one (Layers > "
                             "Split RGB makes one layer per colour)")
    data = full_resolution(layer)
    if data.ndim not in (2, 3):
        raise CardiosegError(f"{layer.name!r} has {data.ndim} axes; choose a 2D image or a 3D "
                             "stack (one time point, one channel)")
    return data


def check_scribbles(layer: Any, image: Any) -> None:
    """Refuse a scribbles ``layer`` that is a result, or that does not lie exactly on ``image``.

    A layer this plugin computed (:data:`RESULT_KEY`: a prediction, the live preview, measured
    objects) holds classes, not strokes. Only a layer with ``image``'s whole :func:`placement`
    has strokes painted over a structure on that structure's pixels.
    """
    made_by = layer.metadata.get(RESULT_KEY)
    if made_by:
        raise CardiosegError(f"{layer.name!r} is a result ({made_by}), not strokes; choose your "
                             "scribbles layer or click New scribbles layer")
    ours, theirs = placement(layer), placement(image)
    differ = [key for key in ours if layer.ndim != image.ndim
              or not np.allclose(np.asarray(ours[key], float), np.asarray(theirs[key], float))]
    if differ:
        def shown(value: Any) -> str:
            return str(np.round(np.asarray(value, float), 6).tolist())

        raise CardiosegError(f"{layer.name!r} does not lie on {image.name!r} (" + "; ".join(
            f"{key} {shown(ours[key])} vs {shown(theirs[key])}" for key in differ) + "); make "
            "the scribbles with New scribbles layer, or give them the image's placement")


def output_layer_kwargs(source: Any, name: str, metadata: dict | None = None) -> dict:
    """Keyword arguments that place a new layer exactly on top of ``source``.

    The new layer's ``metadata`` (``metadata`` plus the calibration flag) says whether its scale
    is a pixel size exactly when ``source``'s does, so a scale of 1 µm stays calibrated and an
    uncalibrated Z step never becomes µm.
    """
    calibrated = is_calibrated(source.metadata, spatial_scale(source))
    return {"name": name, "metadata": {**(metadata or {}), CALIBRATED_KEY: calibrated},
            **placement(source)}


def place_on(layer: Any, source: Any) -> None:
    """Move an existing ``layer`` exactly on top of ``source`` (its whole :func:`placement`)."""
    for key, value in placement(source).items():
        setattr(layer, key, value)


def placement(layer: Any, leading: int = 0) -> dict:
    """Return a layer's whole data-to-world transform (scale, translate, rotate, shear, affine).

    With ``leading`` extra axes in front (the classes of a probability layer), the same transform
    as one affine matrix that leaves those axes alone.
    """
    parts = {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
             "rotate": np.asarray(layer.rotate), "shear": np.asarray(layer.shear)}
    if leading == 0:
        return {**parts, "affine": np.asarray(layer.affine.affine_matrix)}
    whole = layer.affine.affine_matrix @ Affine(**parts).affine_matrix  # napari's order
    matrix = np.eye(len(whole) + leading)
    matrix[leading:, leading:] = whole
    return {"affine": matrix}


def scribble_colormap() -> DirectLabelColormap:
    """Colours of a scribbles layer (:func:`core.colors.scribble_colors`): value k+1 = class k."""
    return DirectLabelColormap(color_dict=scribble_colors(), name="cardioseg scribbles")


def prediction_colormap() -> DirectLabelColormap:
    """Colours of predicted labels (:func:`core.colors.prediction_colors`): label k = class k."""
    return DirectLabelColormap(color_dict=prediction_colors(), name="cardioseg classes")


def result_name(source: Any, model: str, what: str) -> str:
    """``"<image> <model> <what>"``: the name of a layer computed from ``source`` by a model."""
    return f"{source.name} {model} {what}"


def show_progress(bar: ProgressBar, progress: Progress) -> None:
    """Set a progress bar from one yielded :class:`Progress`; an unknown total makes it busy."""
    bar.max = progress.total or 0  # Qt draws a busy bar when min == max == 0
    bar.value = min(progress.done, progress.total) if progress.total else 0
    bar.tooltip = progress.message or None


def refresh_model_lists(viewer: napari.viewer.Viewer) -> None:
    """Make every docked widget with a model list re-read the models (after one was saved)."""
    for widget in viewer.window.dock_widgets.values():
        if hasattr(widget, "refresh_models"):
            widget.refresh_models()


__all__ = [
    "RESULT_KEY", "calibrated_scale", "check_scribbles", "full_resolution", "greyscale_data",
    "is_lazy", "layer_choice", "output_layer_kwargs", "place_on", "placement",
    "prediction_colormap", "refresh_model_lists", "region_in_view", "report_error", "result_name",
    "scribble_colormap", "show_info", "show_progress", "spatial_scale",
]


def region_in_view(viewer: Any, layer: Any, halves: Sequence[int]) -> tuple[slice, ...]:
    """Return the part of ``layer``'s data around the view centre, ``halves[i]`` pixels either side."""
    world = list(viewer.dims.point)
    displayed = list(viewer.dims.displayed)
    for axis, value in zip(displayed, list(viewer.camera.center)[-len(displayed):], strict=True):
        world[axis] = value
    point = layer.world_to_data(world[-layer.ndim:])
    region = []
    for p, half, n in zip(point, halves, layer.data.shape, strict=True):
        c = min(max(round(p), 0), n - 1)
        region.append(slice(max(c - half, 0), min(c + half + 1, n)))
    return tuple(region)
