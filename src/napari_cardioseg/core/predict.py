"""Sliding-window prediction for 2D and 3D images as a generator yielding progress.

The image (``YX`` or ``ZYX``) is conceptually reflection-padded to a multiple of the net's stride
and cut into tiles whose origins are multiples of that stride, so a tile sees exactly what the
untiled net would see, apart from its cut edges. A cut edge spoils the outputs within about half
the net's receptive field of it (the *halo*, ``receptive_field // 2`` per axis, from the model
card), so neighbouring tiles overlap by at least both halos plus one stride, and the separable
raised-cosine blending weights are zero on each halo (and on at least the outer quarter of the
overlap) and normalised to sum to one: probabilities are averaged, never rescaled, and no spoiled
output is used, so the result does not depend on the tile size. The user's ``overlap`` fraction
is a minimum on top of that. Tiles are grown to at least twice the overlap the halo needs (so at
least half of each tile is new), automatic 2D tiles to three times it; only when the device runs
out of memory at that size is the halo cut down to what a smaller tile allows. Nets with global
context (DeepLabV3+, FPN, EfficientNet encoders) have no finite receptive field and can never be
tiled exactly; their halo is capped at :data:`tiling.MAX_HALO`. A 2D net on a 3D stack runs slice
by slice; one batch may hold tiles from several slices, and ``z_sigma`` smooths the result across
slices (:mod:`.slice_smooth`). Where the tiles go is :mod:`.tiling`.

Tiles are read from the input one at a time (``image[z, y0:y1, x0:x1]``), so NumPy memmaps, zarr
and dask arrays are never loaded whole; ``out`` may be any writable array-like too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import tiling
from .backends import Runner, check_backend, cpu_runner
from .device import choose_device
from .errors import CardiosegError
from .models import ModelCard
from .nets import size_multiple, spec_ndim
from .normalize import apply_normalization, fit_normalization
from .progress import Progress, drain
from .slice_smooth import applied_sigma, smooth_in_place
from .tiling import (
    TileAxis,
    auto_tile,
    fitting_halo,
    plan_tiles,
    reflect_index,
    resolve_halo,
    resolve_tile,
)
from .validate import as_grey


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict_steps` returns.

    Attributes
    ----------
    probabilities : array-like
        ``(C, *image.shape)`` float32 softmax probabilities; class 0 is background.
    labels : numpy.ndarray
        ``image.shape``: the most probable class per pixel (0 background, 1 first class, ...),
        in the smallest unsigned dtype that holds every class (see :func:`label_dtype`).
    z_sigma : float
        Width (slices) the probabilities were smoothed by across slices; 0 when they were not.
    """

    probabilities: Any
    labels: np.ndarray
    z_sigma: float = 0.0


def _read_tile(image: Any, z: int | None, origins: Sequence[int], axes: Sequence[TileAxis],
               fitted: dict) -> np.ndarray:
    """One normalised tile of ``image`` with reflection where it passes the image border."""
    index = [reflect_index(np.arange(a, a + ax.tile), ax.n) for a, ax in zip(origins, axes,
                                                                           strict=True)]
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in index)
    region = apply_normalization(image[(z, *box) if z is not None else box], fitted)
    for axis, (i, b) in enumerate(zip(index, box, strict=True)):
        if i.size != b.stop - b.start or i[0] != b.start or np.any(np.diff(i) != 1):
            region = np.take(region, i - b.start, axis=axis)
    return region


def _memory_format(ndim: int, device: torch.device) -> torch.memory_format:
    """Channels-last layouts make oneDNN / cuDNN convolutions about 20% faster."""
    if device.type not in ("cpu", "cuda"):
        return torch.contiguous_format
    return torch.channels_last if ndim == 2 else torch.channels_last_3d


#: in-plane flips averaged by test-time augmentation: none, x, y, both
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def _check_classes(out_shape: Sequence[int], in_shape: Sequence[int], classes: int) -> None:
    """Raise a clear error when the output ``(B, C, *tile)`` lacks the card's class count."""
    if tuple(out_shape) != (in_shape[0], classes, *in_shape[2:]):
        raise CardiosegError(
            f"the model gave output of shape {tuple(out_shape)} for input "
            f"{tuple(in_shape)}; expected {classes} classes (card and weights disagree?)"
        )


def _softmax(model: torch.nn.Module, x: torch.Tensor, classes: int) -> torch.Tensor:
    """Softmax of the model's logits, checked against the card's class count."""
    amp = (torch.autocast("cuda", dtype=torch.float16) if x.device.type == "cuda"
           else contextlib.nullcontext())
    with amp:
        logits = model(x)
    _check_classes(logits.shape, x.shape, classes)
    return torch.softmax(logits.float(), dim=1)


def _run(runner: Runner, batch: np.ndarray, classes: int, flips: bool) -> np.ndarray:
    """:func:`_forward` through a CPU back end (:func:`backends.make_runner`)."""
    def once(x: np.ndarray) -> np.ndarray:
        p = runner(np.ascontiguousarray(x, dtype=np.float32))
        _check_classes(p.shape, (x.shape[0], 1, *x.shape[1:]), classes)
        return p
    if not flips:
        return once(batch)
    total = np.zeros((len(batch), classes, *batch.shape[1:]), np.float64)
    for dims in FLIPS:
        total += np.flip(once(np.flip(batch, dims)), dims) if dims else once(batch)
    return (total / len(FLIPS)).astype(np.float32, copy=False)


def _forward(model: torch.nn.Module | None, batch: np.ndarray, device: torch.device,
             classes: int, flips: bool = False, runner: Runner | None = None) -> np.ndarray:
    """Return softmax probabilities of a batch ``(B, *tile)``, averaged over flips if asked.

    Halves the batch when the device runs out of memory. ``runner`` (a CPU back end) replaces
    the eager model when given.
    """
    if runner is not None:
        return _run(runner, batch, classes, flips)
    assert model is not None  # predict_generator never calls without one or the other
    try:
        x = torch.from_numpy(batch[:, None]).to(
            device, memory_format=_memory_format(batch.ndim - 1, device))
        if not flips:
            return _softmax(model, x, classes).cpu().numpy()
        total = _softmax(model, x, classes)  # FLIPS[0] is the identity
        for dims in FLIPS[1:]:
            total += torch.flip(_softmax(model, torch.flip(x, dims), classes), dims)
        return (total / len(FLIPS)).cpu().numpy()
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        half = len(batch) // 2
        return np.concatenate([_forward(model, batch[:half], device, classes, flips),
                               _forward(model, batch[half:], device, classes, flips)])


def _tiles(image: Any, model: torch.nn.Module | None, card: ModelCard, fitted: dict, out: Any,
           plan: tuple[list[TileAxis], list], batch: int, device: torch.device, flips: bool,
           message: str, runner: Runner | None = None) -> Generator[Progress, None, None]:
    """Predict every tile of ``plan`` into ``out`` (zeroed first), yielding after each batch."""
    classes = card.spec["classes"]
    axes, jobs = plan
    out[...] = 0
    yield Progress(0, len(jobs), "predict", message)
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        x = np.stack([_read_tile(image, z, [ax.origins[i] for ax, i in zip(axes, idx, strict=True)],
                                 axes, fitted) for z, idx in chunk])
        probs = _forward(model, x, device, classes, flips, runner)
        for (z, idx), p in zip(chunk, probs, strict=True):
            weights = [ax.weights[i] for ax, i in zip(axes, idx, strict=True)]
            w = weights[0]
            for extra in weights[1:]:
                w = np.multiply.outer(w, extra)
            region = tuple(slice(ax.origins[i], ax.origins[i] + wi.size)
                           for ax, i, wi in zip(axes, idx, weights, strict=True))
            crop = p[(slice(None), *(slice(0, wi.size) for wi in weights))] * w
            target = (slice(None), z, *region) if z is not None else (slice(None), *region)
            out[target] += crop
        yield Progress(min(start + batch, len(jobs)), len(jobs), "predict", message)


def predict_generator(
    image: Any,
    model: torch.nn.Module | None,
    card: ModelCard,
    *,
    tile: int | Sequence[int] | None = None,
    overlap: float = 0.25,
    batch: int = 4,
    device: str | torch.device = "auto",
    out: Any = None,
    flips: bool = False,
    halo: int | Sequence[int] | None = None,
    backend: str | Callable[[np.ndarray], np.ndarray] = "eager",
    z_sigma: float = 0.0,
) -> Generator[Progress, None, Any]:
    """Predict class probabilities tile by tile, yielding progress after every batch.

    Each attempt first yields ``Progress(0, tiles)``. When the device runs out of memory even
    for one tile, the tile edges are halved (and the halo cut down to what the smaller tiles
    allow) and the prediction starts again: the next ``Progress`` carries the new total (and
    says why in its message).

    Parameters
    ----------
    image : array-like
        ``YX`` or ``ZYX`` greyscale image (NumPy, memmap, zarr, dask).
    model, card : torch.nn.Module, ModelCard
        E.g. from :func:`models.load_model`, or a model being trained. The model is moved to
        ``device`` and put in eval mode and channels-last layout for the call (mode and
        layout are restored). None when ``backend`` is a runner and the device the CPU.
    tile : int or sequence of int, optional
        Largest tile edge (rounded up to the net's stride); default 512 (2D) or 96 (3D), or the
        whole image when smaller; in 2D at least three times the overlap the halo needs
        (1008 px for the shipped models). Grown to twice the overlap the halo needs when smaller (see
        :func:`halo_overlap`). Tiles are shrunk evenly to the smallest size that still covers
        the image with the required overlap.
    overlap : float
        Least fraction of a tile shared with its neighbour, 0 to 0.5; the halos may need more.
    batch : int
        Tiles per forward pass.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps`` (see :func:`choose_device`).
    out : array-like, optional
        Float32 array of shape ``(C, *image.shape)`` to write into.
    flips : bool
        Test-time augmentation: average the probabilities of the tile as it is and flipped along
        x, y and both (4× the time; smoother, usually slightly more accurate masks).
    halo : int or sequence of int, optional
        Pixels per side (and axis) of a tile's cut edge whose outputs are spoiled and get no
        weight; default :func:`default_halo` of the card's receptive field, which makes the
        result independent of the tile size.
    backend : str or callable
        CPU inference engine: ``eager`` (PyTorch, the default for library callers such as training
        previews), ``auto`` (ONNX Runtime when installed; what the CLI and widgets use),
        ``torchscript`` or ``onnx`` (see :func:`backends.make_runner`), built once per call; or a
        runner made by :func:`backends.make_runner`. CUDA and MPS always run eager PyTorch.
    z_sigma : float
        A 2D net on a ``ZYX`` stack: smooth the probabilities across slices with a Gaussian this
        many slices wide (see :mod:`.slice_smooth`; :func:`slice_smooth.slice_sigma` gives the
        default width from the voxel size). 0, the default, keeps the slices independent.

    Returns
    -------
    array-like
        Probabilities ``(C, *image.shape)`` float32 (``out`` when given); class 0 is background.
    """
    image = as_grey(image)
    ndim = spec_ndim(card.spec)
    if ndim == 3 and image.ndim == 2:
        raise CardiosegError(f"model {card.name!r} is 3D and needs a ZYX stack, got a 2D image")
    if not 0.0 <= float(overlap) <= 0.5:
        raise CardiosegError(f"overlap must be between 0 and 0.5, got {overlap}")
    if int(batch) < 1:
        raise CardiosegError(f"batch must be at least 1, got {batch}")
    if not callable(backend):
        check_backend(backend)
    z_sigma = applied_sigma(ndim, image.ndim, z_sigma)
    halo = resolve_halo(halo, card.spec, card.receptive_field_px() if halo is None else None)
    stretch = tiling.AUTO_STRETCH if tile is None else 1.0
    tile = resolve_tile(tile, ndim) if tile is not None else auto_tile(card.spec, halo)
    shape = (card.spec["classes"], *image.shape)
    if out is None:
        out = np.zeros(shape, dtype=np.float32)
    elif tuple(out.shape) != shape:
        raise CardiosegError(f"out has shape {tuple(out.shape)}, expected {shape}")
    fitted = fit_normalization(image, card.normalization)
    dev = choose_device(device)
    multiple = size_multiple(card.spec)
    was_training = model is not None and model.training
    message = ""
    runner: Runner | None = None
    try:
        if callable(backend):
            runner = backend if dev.type == "cpu" else None
        elif model is not None:  # built outside inference mode: exporting traces the model
            runner = cpu_runner(model, card, backend, dev)
        if runner is None:  # eager PyTorch runs the model itself
            if model is None:
                raise CardiosegError("no model to run: only a CPU runner can stand in for it")
            model.eval().to(dev, memory_format=_memory_format(ndim, dev))  # type: ignore[call-overload]
        with torch.inference_mode():
            while True:
                plan = plan_tiles(tuple(image.shape), card.spec, tile, float(overlap), halo, stretch)
                try:
                    yield from _tiles(image, model, card, fitted, out, plan, int(batch), dev,
                                      bool(flips), message, runner)
                    if z_sigma > 0:
                        smooth_in_place(out, z_sigma)
                        tiles = len(plan[1])
                        yield Progress(tiles, tiles, "smooth",
                                       f"smoothed across slices (Gaussian, {z_sigma:.2f} slices)")
                    return out
                except torch.OutOfMemoryError:
                    used = tuple(ax.tile for ax in plan[0])
                    if max(used) <= multiple:
                        hint = "; use device 'cpu'" if dev.type == "cuda" else ""
                        raise CardiosegError(
                            f"out of {dev.type} memory even with the smallest tiles{hint}"
                        ) from None
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    tile = tuple(max(multiple, t // 2) for t in used)
                    stretch = 1.0
                    fitting = tuple(fitting_halo(t, h, multiple)
                                    for t, h in zip(tile, halo, strict=True))
                    message = (f"out of {dev.type} memory: retrying with tiles of "
                               f"{'×'.join(map(str, tile))} px")
                    if fitting != halo:
                        halo = fitting
                        message += f" and a halo of {'×'.join(map(str, halo))} px"
    finally:
        if model is not None:
            model.train(was_training)
            if runner is None:
                model.to(memory_format=torch.contiguous_format)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def predict_steps(image: Any, model: torch.nn.Module | None, card: ModelCard,
                  **kwargs: Any) -> Generator[Progress, None, Prediction]:
    """:func:`predict_generator`, then the labels, both returned as a :class:`Prediction`.

    The labels are computed here, in the caller's (worker) thread, so a GUI only adds layers.
    Takes the keyword arguments of :func:`predict_generator`.
    """
    prob = yield from predict_generator(image, model, card, **kwargs)
    applied = applied_sigma(spec_ndim(card.spec), len(prob.shape) - 1, kwargs.get("z_sigma", 0.0))
    return Prediction(prob, probabilities_to_labels(prob), z_sigma=applied)


def predict_probabilities(image: Any, model: torch.nn.Module, card: ModelCard,
                          **kwargs: Any) -> Any:
    """Drain :func:`predict_generator` and return the probabilities."""
    return drain(predict_generator(image, model, card, **kwargs))


def predict_labels(image: Any, model: torch.nn.Module, card: ModelCard,
                   **kwargs: Any) -> np.ndarray:
    """Drain :func:`predict_steps` and return the labels."""
    return drain(predict_steps(image, model, card, **kwargs)).labels


def label_dtype(classes: int) -> np.dtype:
    """Return the smallest unsigned dtype holding labels ``0 .. classes - 1`` (uint8 up to 256)."""
    if classes > 1 << 16:
        raise CardiosegError(f"{classes} classes do not fit 16-bit labels")
    return np.dtype(np.uint8 if classes <= 1 << 8 else np.uint16)


#: elements of probabilities reduced per block by :func:`probabilities_to_labels`
_ARGMAX_BLOCK = 1 << 24


def probabilities_to_uncertainty(prob: Any) -> np.ndarray:
    """Per-pixel uncertainty ``(1 - max_c p_c) · C / (C - 1)``, float32 in [0, 1].

    0 where one class has all the probability, 1 where all ``C`` classes are equally likely
    (the largest value ``1 - max_c p_c`` can take is ``1 - 1/C``, hence the scale).

    Parameters
    ----------
    prob : array-like
        ``(C, *shape)`` class probabilities (each pixel sums to 1), ``C >= 2``.
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim < 2 or prob.shape[0] < 2:
        raise CardiosegError(f"expected probabilities shaped (C>=2, ...), got {prob.shape}")
    classes = prob.shape[0]
    uncertainty = (1.0 - prob.max(axis=0)) * (classes / (classes - 1))
    return np.clip(uncertainty, 0.0, 1.0).astype(np.float32)


def probabilities_to_labels(prob: Any) -> np.ndarray:
    """Most probable class per pixel: 0 background, 1 first class, ...

    ``prob`` is ``(C, *shape)`` (any array-like: NumPy, memmap, zarr, dask); it is reduced a
    block of its second axis at a time, so it is never loaded whole. The labels' dtype is
    :func:`label_dtype` of ``C`` (uint8 for up to 256 classes).
    """
    shape = tuple(prob.shape)
    if len(shape) < 3 or shape[0] < 2:
        raise CardiosegError(f"expected probabilities shaped (C>=2, ...), got {shape}")
    labels = np.empty(shape[1:], dtype=label_dtype(shape[0]))
    step = max(1, _ARGMAX_BLOCK // math.prod(shape[:1] + shape[2:]))
    for start in range(0, shape[1], step):
        block = np.asarray(prob[:, start : start + step])
        labels[start : start + step] = np.argmax(block, axis=0)
    return labels
