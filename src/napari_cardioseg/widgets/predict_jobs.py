"""What the Predict widget runs in its worker: a prediction in memory, or one streamed into a store.

In memory (:func:`predict_layers`): load the model, predict, and build the result layers in the
worker, so the GUI thread only adds them. Large layers (lazy, multiscale or big, see
:func:`is_large`) are streamed instead (:class:`Stream`): a labels store (OME-Zarr, chunked by block, in the
user's ``predictions`` folder) is created on the GUI thread (metadata only) and shown at once as a
lazy Labels layer; the worker reads one haloed block at a time (:func:`core.blocks.predict_blocks`)
and writes its labels into the store, and every finished block refreshes the layer. Stop keeps the
blocks already written; the store is marked complete (with its lower-resolution levels) only at
the end.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer

from ..core import backends, zarr_io
from ..core.blocks import predict_blocks
from ..core.errors import CardiosegError
from ..core.models import ModelCard, load_model, read_card, user_models_dir
from ..core.nets import spec_ndim
from ..core.predict import predict_steps
from ..core.progress import Progress
from ..core.run import fill_levels, stream_geometry
from ..core.slice_smooth import slice_sigma, width_for
from ..core.units import is_calibrated
from ._common import (
    RESULT_KEY,
    calibrated_scale,
    full_resolution,
    greyscale_data,
    is_lazy,
    output_layer_kwargs,
    placement,
    prediction_colormap,
    result_name,
    spatial_scale,
)

#: image layers with more voxels than this (or not held in memory) are predicted into a store
LARGE_VOXELS = 1 << 27


def is_large(layer: Image) -> bool:
    """Tell whether ``layer`` is multiscale, lazy (not NumPy) or over :data:`LARGE_VOXELS` voxels."""
    return is_lazy(layer) or layer.data.size > LARGE_VOXELS


def gui_backend(model: str) -> str:
    """``auto`` when the graph ``auto`` runs is cached (or cannot be), else ``eager`` for now.

    That graph is ONNX float32, or int8 for the shipped models (``core.backends.auto_backend``).
    Without it cached, this run stays on eager PyTorch while a separate process exports (and
    quantises) the graph for the next runs (exporting in a worker thread would freeze the viewer
    for about half a second).
    """
    try:
        card = read_card(model)
    except CardiosegError:  # a bioimage.io package: it runs its own weights
        return "auto"
    if not card.weights_sha256 or backends.auto_cached(card):
        return "auto"
    backends.cache_onnx_in_background(model)
    return "eager"


Z_SIGMA_KEY = "cardioseg_z_sigma"
"""Labels ``metadata`` key: the width (slices) the prediction was smoothed by across slices."""


def done_message(labels: Layer) -> str:
    """Status line for a finished prediction, with the smoothing across slices when there was one."""
    smoothed = labels.metadata.get(Z_SIGMA_KEY, 0.0)
    across = f" (smoothed across slices, {smoothed:.2f} slices wide)" if smoothed else ""
    return f"done: {labels.name}{across}"


def stream_done_message(path: Path, probabilities: bool) -> str:
    """Status line for a finished streamed prediction (whose probabilities are not kept)."""
    unkept = (" (probabilities are not kept for layers this large; `cardioseg predict --prob` "
              "writes them)") if probabilities else ""
    return f"done: {path}{unkept}"


def unused_store_path(stem: Path) -> Path:
    """``STEM.ome.zarr``, or ``STEM-2.ome.zarr``, ... when taken (two runs within a second)."""
    path, n = stem.with_name(f"{stem.name}.ome.zarr"), 1
    while path.exists():
        n += 1
        path = stem.with_name(f"{stem.name}-{n}.ome.zarr")
    return path


def predictions_folder() -> Path:
    """Folder for the stores of large predictions: ``predictions`` beside the user models."""
    folder = user_models_dir(create=True).parent / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Stream:
    """One streaming prediction: its store, its lazy layer and its block geometry."""

    def __init__(self, layer: Image, model: str, tile: int | None, overlap: float) -> None:
        self.card: ModelCard = read_card(model)
        self.model = model
        self.volume: Any = full_resolution(layer)
        self.voxel = calibrated_scale(layer)  # the smoothing width is decided in the worker;
        # the store's chunks expect it (blocks keep their depth when it turns out to be 0)
        self.block, self.halo = stream_geometry(self.card, self.volume.shape, tile, overlap,
                                                z_sigma=slice_sigma(self.voxel))
        name = result_name(layer, self.card.name, "labels")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.path = unused_store_path(predictions_folder() / f"{name.replace(' ', '_')}-{stamp}")
        scale = spatial_scale(layer)
        self.group = zarr_io.create_ome_zarr(
            self.path, self.volume.shape, np.uint8, scale, chunks=self.block,
            name=self.card.name, run={"model": self.card.name, "image": layer.name},
            calibrated=is_calibrated(layer.metadata, scale))  # never an invented µm
        self.layer = Labels(self.group["0"], colormap=prediction_colormap(),
                            **output_layer_kwargs(layer, name, {"store": str(self.path),
                                                                RESULT_KEY: self.card.name}))

    def steps(self, **kwargs: Any) -> Generator[Progress, None, Path]:
        """Worker side: load the model, predict block by block into the store, then finish it."""
        yield Progress(0, None, "load", f"loading {self.card.name}")
        net, card = load_model(self.model)
        ndim = spec_ndim(card.spec)
        blocks = predict_blocks(self.volume, net, card, self.group["0"], block=self.block,
                                halo=self.halo[-ndim:],
                                z_sigma=width_for(ndim, self.volume, self.voxel, self.layer.name),
                                **kwargs)
        yield from fill_levels(blocks, [self.group])
        return self.path


def predict_layers(model: str, layer: Image, probabilities: bool,
                   **kwargs: Any) -> Generator[Progress, None, list[Layer]]:
    """Worker side: load, predict, and build the result layers (only adding them is left)."""
    yield Progress(0, None, "load", f"loading {Path(model).stem}")
    net, card = load_model(model)
    z_sigma = width_for(spec_ndim(card.spec), full_resolution(layer), calibrated_scale(layer), layer.name)
    result = yield from predict_steps(greyscale_data(layer), net, card, z_sigma=z_sigma, **kwargs)
    name = result_name(layer, card.name, "labels")
    out: list[Layer] = [Labels(result.labels, colormap=prediction_colormap(),
                               **output_layer_kwargs(layer, name, {Z_SIGMA_KEY: result.z_sigma,
                                                                  RESULT_KEY: card.name}))]
    if probabilities:
        prob = result.probabilities
        fg = prob[1] if prob.shape[0] == 2 else prob[1:]
        place = output_layer_kwargs(layer, result_name(layer, card.name, "probabilities"))
        if fg.ndim > layer.data.ndim:  # classes in front: the same placement as one affine
            place = {"name": place["name"], "metadata": place["metadata"],
                     **placement(layer, leading=fg.ndim - layer.data.ndim)}
        out.append(Image(fg, contrast_limits=(0.0, 1.0), colormap="magma", blending="additive",
                         **place))
    return out
