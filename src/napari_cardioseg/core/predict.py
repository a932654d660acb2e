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
tiled exactly; their halo is capped at :data:`MAX_HALO`. A 2D net on a 3D stack runs slice by
slice; one batch may hold tiles from several slices.

Tiles are read from the input one at a time (``image[z, y0:y1, x0:x1]``), so NumPy memmaps, zarr
and dask arrays are never loaded whole; ``out`` may be any writable array-like too.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backends import Runner, check_backend, cpu_runner
from .device import choose_device
from .errors import CardiosegError
from .models import ModelCard
from .nets import receptive_field, size_multiple, spec_ndim
from .normalize import apply_normalization, fit_normalization
from .progress import Progress, drain
from .validate import as_grey

AUTO_TILE = {2: 512, 3: 96}  # least tile edge when ``tile=None`` (see _auto_tile)
MAX_HALO = {2: 256, 3: 64}  # largest halo (px per side) used, for nets with global context
AUTO_STRETCH = 1.25  # automatic tiles may grow this much to save a tile along an axis


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
    model_name : str
        The card's name of the model that predicted (set by :func:`load_and_predict_steps`).
    """

    probabilities: Any
    labels: np.ndarray
    model_name: str = ""


def reflect_index(index: np.ndarray, n: int) -> np.ndarray:
    """Map coordinates outside ``[0, n)`` back inside by mirror reflection (like ``np.pad``)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


def _ramp(length: int, halo: int = 0) -> np.ndarray:
    """Weights over an overlap of ``length`` px seen from the tile that starts there.

    Zero on the first ``max(halo, length // 4)`` px (the part spoiled by the cut edge), a raised
    cosine, one on as many last px; ``r + r[::-1] == 1``.
    """
    halo = max(halo, length // 4)
    ramp = np.ones(length)
    if length == 0:
        return ramp
    ramp[:halo] = 0.0
    width = length - 2 * halo
    u = (np.arange(width) + 0.5) / width
    ramp[halo : length - halo] = 0.5 - 0.5 * np.cos(np.pi * u)
    return ramp


@dataclass
class _Axis:
    """Tile origins along one axis and each tile's normalised blending weights (cropped to n)."""

    n: int
    tile: int
    origins: list[int]
    weights: list[np.ndarray]


def halo_overlap(halo: int, multiple: int) -> int:
    """Return the least overlap (px) of two tiles whose cut edges spoil ``halo`` px each.

    Both halos plus at least one stride to blend over, rounded up to the stride; 0 for no halo.
    """
    return 0 if halo <= 0 else math.ceil((2 * halo + multiple) / multiple) * multiple


def _axis(n: int, tile: int, overlap: float, multiple: int, halo: int = 0,
          stretch: float = 1.0) -> _Axis:
    """Tile an axis of ``n`` px with the fewest tiles of at most ``tile`` px, then shrink them.

    ``tile`` is first grown to twice :func:`halo_overlap` when smaller. With ``stretch`` > 1,
    one tile fewer is used when its tiles need to grow by at most that factor (automatic tiles:
    a 1024 px axis with 1008 px tiles becomes one tile, not two of 640 px, 20 % less work). The
    tiles are made as small as possible (a multiple of the stride) while still covering the
    padded axis with at least the requested overlap (and the halos), and spread evenly: less
    computation than equal full-size tiles with the last one shifted back (e.g. 23% less for 1024²
    at 512/0.25).
    """
    padded = math.ceil(n / multiple) * multiple
    least = halo_overlap(halo, multiple)
    tile = min(max(math.ceil(tile / multiple) * multiple, 2 * least), padded)
    min_overlap = min(max(round(overlap * tile / multiple) * multiple, least), tile - multiple)
    count = 1 if tile == padded else math.ceil((padded - min_overlap) / (tile - min_overlap))
    if count > 1:
        fewer = math.ceil((padded + (count - 2) * min_overlap) / (count - 1) / multiple) * multiple
        if fewer <= stretch * tile:
            count, tile = count - 1, min(fewer, padded)
    if count > 1:
        needed = (padded + (count - 1) * min_overlap) / count
        tile = min(tile, math.ceil(needed / multiple) * multiple)
    step = (padded - tile) / max(count - 1, 1)
    origins = [int(i * step // multiple) * multiple for i in range(count - 1)] + [padded - tile]
    raw = []
    for i, a in enumerate(origins):
        w = np.ones(tile)
        if i > 0:
            left = origins[i - 1] + tile - a
            w[:left] = _ramp(left, halo)
        if i + 1 < len(origins):
            right = a + tile - origins[i + 1]
            w[tile - right :] = np.minimum(w[tile - right :], _ramp(right, halo)[::-1])
        raw.append(w[: n - a])
    total = np.zeros(n)
    for a, w in zip(origins, raw, strict=True):
        total[a : a + w.size] += w
    weights = [(w / total[a : a + w.size]).astype(np.float32)
               for a, w in zip(origins, raw, strict=True)]
    return _Axis(n, tile, origins, weights)


def _read_tile(image: Any, z: int | None, origins: Sequence[int], axes: Sequence[_Axis],
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


def _forward(model: torch.nn.Module, batch: np.ndarray, device: torch.device,
             classes: int, flips: bool = False, runner: Runner | None = None) -> np.ndarray:
    """Return softmax probabilities of a batch ``(B, *tile)``, averaged over flips if asked.

    Halves the batch when the device runs out of memory. ``runner`` (a CPU back end) replaces
    the eager model when given.
    """
    if runner is not None:
        return _run(runner, batch, classes, flips)
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


def _plan(shape: tuple[int, ...], spec: dict, tile: Sequence[int], overlap: float,
          halo: Sequence[int], stretch: float = 1.0,
          ) -> tuple[list[_Axis], list[tuple[int | None, tuple[int, ...]]]]:
    """Per-axis tilings and the list of ``(slice or None, tile index per axis)`` jobs."""
    ndim = spec_ndim(spec)
    axes = [_axis(n, t, overlap, size_multiple(spec), h, stretch)
            for n, t, h in zip(shape[-ndim:], tile, halo, strict=True)]
    slices: list[int | None] = list(range(shape[0])) if len(shape) > ndim else [None]
    jobs = [(z, idx) for z in slices
            for idx in itertools.product(*(range(len(ax.origins)) for ax in axes))]
    return axes, jobs


def default_halo(field: Sequence[int]) -> tuple[int, ...]:
    """Return the halo (px per side and axis) of a net with receptive field ``field``.

    Half of the field, at most :data:`MAX_HALO`.
    """
    return tuple(min(int(f) // 2, MAX_HALO[len(field)]) for f in field)


def _halo_shape(halo: int | Sequence[int] | None, spec: dict,
                field: Sequence[int] | None) -> tuple[int, ...]:
    """Return the halo asked for (one per spatial axis, checked), or the net's :func:`default_halo`."""
    ndim = spec_ndim(spec)
    if halo is None:
        return default_halo(field if field is not None else receptive_field(spec))
    halo = (halo,) * ndim if isinstance(halo, (int, np.integer)) else tuple(halo)
    if len(halo) != ndim or any(int(h) < 0 for h in halo):
        raise CardiosegError(f"halo must be a size >= 0 or {ndim} sizes, got {halo}")
    return tuple(int(h) for h in halo)


def _fitting_halo(tile: int, halo: int, multiple: int) -> int:
    """Return the largest halo up to ``halo`` whose tiles need not be grown beyond ``tile`` px."""
    while halo > 0 and 2 * halo_overlap(halo, multiple) > tile:
        halo -= 1
    return halo


def _auto_tile(spec: dict, halo: Sequence[int]) -> tuple[int, ...]:
    """Return the tile edges for ``tile=None``.

    :data:`AUTO_TILE`, and in 2D at least three times the halo overlap, so the halos cost about
    what a 25% overlap does (3D tiles only grow to twice it: their memory grows with the cube of
    the edge).
    """
    ndim, multiple = spec_ndim(spec), size_multiple(spec)
    factor = 3 if ndim == 2 else 2
    return tuple(max(AUTO_TILE[ndim], factor * halo_overlap(h, multiple)) for h in halo)


def count_tiles(shape: Sequence[int], spec: dict, tile: int | Sequence[int] | None = None,
                overlap: float = 0.25, *, halo: int | Sequence[int] | None = None,
                receptive_field: Sequence[int] | None = None) -> int:
    """How many tiles :func:`predict_generator` will run for an image of ``shape``.

    ``halo`` as in :func:`predict_generator`; by default it comes from ``receptive_field``
    (the card's, :meth:`ModelCard.receptive_field_px`), measured from ``spec`` when not given.
    """
    halo_shape = _halo_shape(halo, spec, receptive_field)
    tile_shape = _tile_shape(tile, spec_ndim(spec)) if tile is not None else _auto_tile(
        spec, halo_shape)
    stretch = AUTO_STRETCH if tile is None else 1.0
    return len(_plan(tuple(shape), spec, tile_shape, float(overlap), halo_shape, stretch)[1])


def _tiles(image: Any, model: torch.nn.Module, card: ModelCard, fitted: dict, out: Any,
           plan: tuple[list[_Axis], list], batch: int, device: torch.device, flips: bool,
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


def _tile_shape(tile: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """Return the tile edges asked for, one per spatial axis, checked."""
    tile = (tile,) * ndim if isinstance(tile, (int, np.integer)) else tuple(tile)
    if len(tile) != ndim or any(int(t) < 1 for t in tile):
        raise CardiosegError(f"tile must be a positive size or {ndim} sizes, got {tile}")
    return tuple(int(t) for t in tile)


def predict_generator(
    image: Any,
    model: torch.nn.Module,
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
        layout are restored).
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
    halo = _halo_shape(halo, card.spec, card.receptive_field_px() if halo is None else None)
    stretch = AUTO_STRETCH if tile is None else 1.0
    tile = _tile_shape(tile, ndim) if tile is not None else _auto_tile(card.spec, halo)
    shape = (card.spec["classes"], *image.shape)
    if out is None:
        out = np.zeros(shape, dtype=np.float32)
    elif tuple(out.shape) != shape:
        raise CardiosegError(f"out has shape {tuple(out.shape)}, expected {shape}")
    fitted = fit_normalization(image, card.normalization)
    dev = choose_device(device)
    multiple = size_multiple(card.spec)
    was_training = model.training
    message = ""
    runner: Runner | None = None
    try:
        if callable(backend):
            runner = backend if dev.type == "cpu" else None
        else:  # built outside inference mode: exporting traces the model
            runner = cpu_runner(model, card, backend, dev)
        if runner is None:  # eager PyTorch runs the model itself
            model.eval().to(dev, memory_format=_memory_format(ndim, dev))  # type: ignore[call-overload]
        with torch.inference_mode():
            while True:
                plan = _plan(tuple(image.shape), card.spec, tile, float(overlap), halo, stretch)
                try:
                    yield from _tiles(image, model, card, fitted, out, plan, int(batch), dev,
                                      bool(flips), message, runner)
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
                    fitting = tuple(_fitting_halo(t, h, multiple)
                                    for t, h in zip(tile, halo, strict=True))
                    message = (f"out of {dev.type} memory: retrying with tiles of "
                               f"{'×'.join(map(str, tile))} px")
                    if fitting != halo:
                        halo = fitting
                        message += f" and a halo of {'×'.join(map(str, halo))} px"
    finally:
        model.train(was_training)
        if runner is None:
            model.to(memory_format=torch.contiguous_format)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def predict_steps(image: Any, model: torch.nn.Module, card: ModelCard,
                  **kwargs: Any) -> Generator[Progress, None, Prediction]:
    """:func:`predict_generator`, then the labels, both returned as a :class:`Prediction`.

    The labels are computed here, in the caller's (worker) thread, so a GUI only adds layers.
    Takes the keyword arguments of :func:`predict_generator`.
    """
    prob = yield from predict_generator(image, model, card, **kwargs)
    return Prediction(prob, probabilities_to_labels(prob))


def load_and_predict_steps(model: str | os.PathLike, image: Any,
                           **kwargs: Any) -> Generator[Progress, None, Prediction]:
    """Load ``model`` (a name, card path or bioimage.io package), then :func:`predict_steps`.

    Loading happens in the caller's (worker) thread too, so a GUI does no model work itself.
    """
    from .models import load_model

    yield Progress(0, None, "load", f"loading {Path(model).stem}")
    net, card = load_model(model)
    result = yield from predict_steps(image, net, card, **kwargs)
    return replace(result, model_name=card.name)


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
