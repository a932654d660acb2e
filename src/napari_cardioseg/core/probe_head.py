"""Linear probe of a pretrained net's output layer on the painted pixels ("LP" of LP-FT).

Fine-tuning a whole pretrained net from a few strokes first spends its steps moving a head
that does not fit the new data, distorting the features on the way. Kumar et al. 2022
("Fine-tuning can distort pretrained features and underperform out-of-distribution") fit
the head alone first, with the features fixed (a linear probe), and fine-tune from there.

Here the net runs once, without gradients, over windows around the strokes; a forward hook on
the output convolution (named by the registry row, :attr:`nets.Architecture.head`) captures the
features entering it. A convolution with stride 1 is a linear map of the ``k×k(×k)`` feature
patch around each output pixel, so fitting it on the painted pixels is a multinomial logistic
regression (:func:`fit_linear`, class-balanced, L2) on those patches; the fitted weights are
written into the head (:func:`probe_head`), which gives a preview before any optimiser step.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import nets as _nets
from .sampling import extract

#: L2 weight on the standardised head weights (0.5 λ ||W - W_anchor||², mean class-balanced loss)
PROBE_L2 = 1.0
#: painted pixels used at most per class (a random subset beyond this)
PROBE_MAX_PIXELS = 50_000
#: largest region of painted pixels (per axis, 2D / 3D) fed to the net in one window
PROBE_TILE = {2: (256, 256), 3: (32, 128, 128)}
#: context added on every side of a window (pixels per axis, 2D / 3D)
PROBE_MARGIN = {2: (64, 64), 3: (8, 32, 32)}


@dataclass(frozen=True)
class ProbeFit:
    """What a linear probe did.

    Attributes
    ----------
    pixels : int
        Painted pixels the head was fitted on.
    classes : tuple of int
        Classes (0 background, ...) present among them.
    accuracy : float
        Balanced accuracy of the fitted head on those pixels.
    seconds : float
        Wall time of the feature pass and the fit.
    """

    pixels: int
    classes: tuple[int, ...]
    accuracy: float
    seconds: float


def head_layer(model: nn.Module, spec: dict) -> nn.Conv2d | nn.Conv3d | None:
    """Return the net's output convolution when a linear probe can fit it, else None.

    It can when the registry row names it (:attr:`nets.Architecture.head`) and it is a
    ``Conv2d``/``Conv3d`` with stride 1, dilation 1, one group and zero padding given as sizes.
    """
    layer = _nets.head_module(model, spec)
    if not isinstance(layer, nn.Conv2d | nn.Conv3d):
        return None
    ok = (all(s == 1 for s in layer.stride) and all(d == 1 for d in layer.dilation)
          and layer.groups == 1 and layer.padding_mode == "zeros"
          and not isinstance(layer.padding, str))
    return layer if ok else None


def patch_features(features: torch.Tensor, points: torch.Tensor, layer: nn.Conv2d | nn.Conv3d
                   ) -> torch.Tensor:
    """Gather the inputs of ``layer`` at each point: ``(n, C_in·k^d)``, ordered as its weight.

    Parameters
    ----------
    features : torch.Tensor
        ``(C_in, *spatial)`` input of ``layer`` (one sample).
    points : torch.Tensor
        ``(n, d)`` integer positions in the layer's output (= input, stride 1) grid.
    layer : torch.nn.Conv2d or torch.nn.Conv3d
        A convolution accepted by :func:`head_layer`.
    """
    pad = [int(p) for p in layer.padding]  # sizes (head_layer refuses "same"/"valid")
    padded = F.pad(features, [p for p in reversed(pad) for _ in (0, 1)])
    columns = []
    for offset in itertools.product(*(range(int(k)) for k in layer.kernel_size)):
        index: tuple[slice | torch.Tensor, ...] = (
            slice(None), *(points[:, a] + o for a, o in enumerate(offset)))
        columns.append(padded[index])  # (C_in, n)
    return torch.stack(columns, dim=1).reshape(-1, points.shape[0]).T


def fit_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, l2: float = PROBE_L2,
               anchor: tuple[torch.Tensor, torch.Tensor] | None = None, bias: bool = True,
               max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression with class-balanced weights and L2, fitted by L-BFGS.

    Minimises ``Σ_n w_n CE(W z_n + b, y_n) / Σ_n w_n + 0.5 l2 ||W - W_0||²`` on standardised
    features ``z`` (zero mean, unit variance per feature), with ``w_n`` = 1 / (pixels of class
    ``y_n``), and returns the weights for the raw features.

    Parameters
    ----------
    x : torch.Tensor
        ``(n, d)`` features.
    y : torch.Tensor
        ``(n,)`` classes ``0 .. n_classes - 1``.
    n_classes : int
        Rows of the weight matrix (classes absent from ``y`` get weights too).
    l2 : float
        Weight of the L2 term.
    anchor : (torch.Tensor, torch.Tensor), optional
        ``(W_0, b_0)`` for raw features, e.g. the pretrained head: the fit starts there and the
        L2 term pulls toward it. None: toward 0, from 0.
    bias : bool
        Fit a bias (False: the returned bias is zero).
    max_iter : int
        L-BFGS iterations.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``(n_classes, d)`` weights and ``(n_classes,)`` bias for the raw features.
    """
    x = x.double()
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    z = (x - mean) / std
    counts = torch.bincount(y, minlength=n_classes).double()
    weights = (1.0 / counts.clamp(min=1.0))[y]
    weights = weights / weights.sum()
    if anchor is None:
        w0 = torch.zeros(n_classes, x.shape[1], dtype=torch.float64)
        b0 = torch.zeros(n_classes, dtype=torch.float64)
    else:
        raw_w, raw_b = anchor[0].double(), anchor[1].double()
        w0, b0 = raw_w * std, raw_b + raw_w @ mean  # the same map on standardised features
    w = w0.clone().requires_grad_(True)
    b = (b0 if bias else torch.zeros_like(b0)).clone().requires_grad_(bias)
    optimiser = torch.optim.LBFGS([w, b] if bias else [w], lr=1.0, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        nll = F.cross_entropy(z @ w.T + b, y, reduction="none")
        loss = (weights * nll).sum() + 0.5 * l2 * ((w - w0) ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        raw_w = w / std
        raw_b = b - raw_w @ mean
    return raw_w.float(), raw_b.float()


def _tiles(painted: np.ndarray, tile: Sequence[int]) -> list[tuple[slice, ...]]:
    """Boxes of at most ``tile`` pixels per axis that hold every painted pixel (empty ones left out)."""
    where = np.nonzero(painted)
    low = [int(a.min()) for a in where]
    high = [int(a.max()) + 1 for a in where]
    ranges = [range(lo, hi, t) for lo, hi, t in zip(low, high, tile, strict=True)]
    boxes = []
    for starts in itertools.product(*ranges):
        box = tuple(slice(s, min(s + t, hi)) for s, t, hi in zip(starts, tile, high, strict=True))
        if painted[box].any():
            boxes.append(box)
    return boxes


def _planes(image: np.ndarray, net_ndim: int) -> list[np.ndarray]:
    """Split into the net's inputs: the slices of a stack for a 2D net, else the image."""
    if net_ndim == 2 and image.ndim == 3:
        return list(image)
    return [image]


@torch.no_grad()
def stroke_features(model: nn.Module, layer: nn.Conv2d | nn.Conv3d, images: Sequence[np.ndarray],
                    scribbles: Sequence[np.ndarray], *, net_ndim: int, multiple: int,
                    n_classes: int, device: torch.device | str = "cpu",
                    rng: np.random.Generator | None = None,
                    max_pixels: int = PROBE_MAX_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Capture the inputs of ``layer`` at the painted pixels, and their classes, in one pass.

    The painted region of each image (each slice for a 2D net on a stack) is cut into tiles of at
    most :data:`PROBE_TILE`; each tile plus :data:`PROBE_MARGIN` (mirrored at the image border,
    rounded up to ``multiple``) goes through ``model`` in evaluation mode. Labels beyond
    ``n_classes`` are ignored; beyond ``max_pixels`` per class a random subset is kept.

    Parameters
    ----------
    model : torch.nn.Module
        The net; its mode is restored afterwards.
    layer : torch.nn.Conv2d or torch.nn.Conv3d
        Its output convolution (:func:`head_layer`).
    images, scribbles : sequence of numpy.ndarray
        Normalised images, and their scribbles (0 unpainted, 1 background, 2.. classes).
    net_ndim, multiple, n_classes : int
        The net's spatial axes, stride and classes.
    device : torch.device or str
        Where the net runs.
    rng : numpy.random.Generator, optional
        For the subset (default seed 0).
    max_pixels : int
        Painted pixels kept per class.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``(n, C_in·k^d)`` float32 features (CPU) and ``(n,)`` int64 classes (0 background, ...).
    """
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    training = model.training
    model.eval()
    xs, ys = [], []
    try:
        for image, scribble in zip(images, scribbles, strict=True):
            for plane, labels in zip(_planes(image, net_ndim),
                                     _planes(np.asarray(scribble), net_ndim), strict=True):
                painted = (labels > 0) & (labels <= n_classes)
                if not painted.any():
                    continue
                for box in _tiles(painted, PROBE_TILE[net_ndim]):
                    x, y = _window_features(model, layer, captured, plane, labels, painted, box,
                                            PROBE_MARGIN[net_ndim], multiple, device)
                    xs.append(x)
                    ys.append(y)
    finally:
        hook.remove()
        model.train(training)
    if not xs:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)
    x, y = torch.cat(xs), torch.cat(ys)
    rng = rng or np.random.default_rng(0)
    keep = []
    for c in torch.unique(y).tolist():
        index = torch.nonzero(y == c)[:, 0].numpy()
        if index.size > max_pixels:
            index = np.sort(rng.choice(index, max_pixels, replace=False))
        keep.append(index)
    chosen = torch.from_numpy(np.sort(np.concatenate(keep)))
    return x[chosen], y[chosen]


def _window_features(model: nn.Module, layer: nn.Conv2d | nn.Conv3d, captured: list[torch.Tensor],
                     plane: np.ndarray, labels: np.ndarray, painted: np.ndarray,
                     box: tuple[slice, ...], margin: Sequence[int], multiple: int,
                     device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and classes of the painted pixels in ``box``, from one window around it."""
    size = [-(-(sl.stop - sl.start + 2 * m) // multiple) * multiple
            for sl, m in zip(box, margin, strict=True)]
    origin = [(sl.start + sl.stop) // 2 - s // 2 for sl, s in zip(box, size, strict=True)]
    centre = [o + s // 2 for o, s in zip(origin, size, strict=True)]
    window = extract(plane, centre, size).astype(np.float32)
    captured.clear()
    model(torch.from_numpy(window)[None, None].to(device))
    features = captured[-1][0].float()
    inside = np.zeros(painted.shape, bool)
    inside[box] = painted[box]
    where = np.nonzero(inside)
    classes = torch.from_numpy(labels[where].astype(np.int64) - 1)
    local = np.stack([w - o for w, o in zip(where, origin, strict=True)], axis=1)
    scale = [f / s for f, s in zip(features.shape[1:], size, strict=True)]
    if any(s != 1 for s in scale):  # the head runs at a lower resolution (then upsampled)
        local = np.stack([np.minimum((local[:, a] * s).astype(np.int64), n - 1)
                          for a, (s, n) in enumerate(zip(scale, features.shape[1:],
                                                         strict=True))], axis=1)
    points = torch.from_numpy(local.astype(np.int64)).to(features.device)
    return patch_features(features, points, layer).cpu(), classes


def _head_and_features(model: nn.Module, spec: dict, images: Sequence[np.ndarray],
                       scribbles: Sequence[np.ndarray], device: torch.device | str, seed: int
                       ) -> tuple[nn.Conv2d | nn.Conv3d, torch.Tensor, torch.Tensor] | None:
    """Return the head and :func:`stroke_features`; None without a head to probe or two classes."""
    layer = head_layer(model, spec)
    if layer is None:
        return None
    x, y = stroke_features(model, layer, images, scribbles, net_ndim=_nets.spec_ndim(spec),
                           multiple=_nets.size_multiple(spec), n_classes=int(spec["classes"]),
                           device=device, rng=np.random.default_rng(seed))
    if torch.unique(y).numel() < 2:  # one painted class says nothing about the boundary
        return None
    return layer, x, y


def probe_head(model: nn.Module, spec: dict, images: Sequence[np.ndarray],
               scribbles: Sequence[np.ndarray], *, device: torch.device | str = "cpu",
               anchor: bool = True, l2: float = PROBE_L2, seed: int = 0) -> ProbeFit | None:
    """Fit the output convolution of ``model`` to the painted pixels, in place (features fixed).

    Parameters
    ----------
    model : torch.nn.Module
        The net, on ``device``; only its output layer changes.
    spec : dict
        Its architecture spec.
    images, scribbles : sequence of numpy.ndarray
        Normalised images and their scribbles (0 unpainted, 1 background, 2.. classes; pixels
        to leave out, e.g. held-out strokes, set to 0).
    device : torch.device or str
        Where the net runs.
    anchor : bool
        Start from the current head and pull toward it (a pretrained head for these classes);
        False: from zero (a new head).
    l2 : float
        L2 weight (see :func:`fit_linear`).
    seed : int
        Seed of the pixel subset.

    Returns
    -------
    ProbeFit or None
        None (nothing changed) when the net's head cannot be probed or fewer than two classes
        are painted.
    """
    start = time.perf_counter()
    found = _head_and_features(model, spec, images, scribbles, device, seed)
    if found is None:
        return None
    layer, x, y = found
    n_classes = int(spec["classes"])
    weight = layer.weight.detach()
    has_bias = layer.bias is not None
    start_bias = layer.bias.detach() if layer.bias is not None else torch.zeros(n_classes)
    fixed = (weight.reshape(n_classes, -1).cpu(), start_bias.cpu()) if anchor else None
    w, b = fit_linear(x, y, n_classes, l2=l2, anchor=fixed, bias=has_bias)
    with torch.no_grad():
        layer.weight.copy_(w.reshape(weight.shape).to(weight))
        if layer.bias is not None:
            layer.bias.copy_(b.to(layer.bias))
        guess = (x @ w.T + b).argmax(1)
    return ProbeFit(int(y.numel()), tuple(int(c) for c in torch.unique(y).tolist()),
                    balanced_accuracy(guess, y), time.perf_counter() - start)


def balanced_accuracy(guess: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the classes present in ``y`` of the share of their pixels guessed right."""
    recalls = [float((guess[y == c] == c).float().mean()) for c in torch.unique(y).tolist()]
    return math.fsum(recalls) / len(recalls)


def head_accuracy(model: nn.Module, spec: dict, images: Sequence[np.ndarray],
                  scribbles: Sequence[np.ndarray], *, device: torch.device | str = "cpu",
                  seed: int = 0) -> float | None:
    """Balanced accuracy of the net's own answer on the painted pixels (nothing is fitted).

    Parameters are those of :func:`probe_head`. Returns None when the head cannot be probed or
    fewer than two classes are painted.
    """
    found = _head_and_features(model, spec, images, scribbles, device, seed)
    if found is None:
        return None
    layer, x, y = found
    n_classes = int(spec["classes"])
    w = layer.weight.detach().reshape(n_classes, -1).float().cpu()
    b = layer.bias.detach().float().cpu() if layer.bias is not None else torch.zeros(n_classes)
    return balanced_accuracy((x @ w.T + b).argmax(1), y)
