"""Adapting a pretrained net to new data from a few strokes without forgetting what it knew.

A handful of strokes is quickly memorised: fine-tuning on them alone moves the net away from
what it learnt from dense labels wherever no stroke was painted. Three tools counter that:

- :func:`prior_loss`: a distillation term (Hinton, Vinyals & Dean 2015) that keeps the
  prediction on *unpainted* pixels close to the frozen starting model, as in "Learning without
  Forgetting" (Li & Hoiem 2017); strokes override it where they are painted.
- :func:`param_groups`: a smaller learning rate for the encoder than for the decoder and head
  (discriminative fine-tuning, Howard & Ruder 2018).
- :func:`dilate_strokes`: thicker strokes, grown only into unpainted pixels.
- :func:`split_strokes` and :class:`HeldOut`: a share of the strokes is kept out of training and
  used to pick the state to return (early stopping, Prechelt 1998), so a round of training never
  returns a net that does worse on unseen strokes than the one it started from.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from . import nets as _nets
from .sampling import extract

HOLDOUT_EVERY = 10  # training steps between two scores on the held-out strokes
HOLDOUT_MARGIN = 32  # context (pixels) around a held-out stroke when it is predicted


def frozen_teacher(model: torch.nn.Module) -> torch.nn.Module:
    """Return a frozen copy of ``model`` in evaluation mode (batch-norm statistics fixed)."""
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher


def prior_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Kullback-Leibler divergence from the teacher's to the student's class probabilities.

    ``Σ_n w_n Σ_c q_cn (log q_cn - log p_cn) / Σ_n w_n`` with ``q`` the teacher's and ``p`` the
    student's softmax probabilities: zero where the two agree, and only on pixels with weight
    (usually the unpainted ones). Returns zero (with a gradient path) when no pixel has weight.

    Parameters
    ----------
    logits, teacher_logits : torch.Tensor
        ``(N, C, *spatial)`` raw outputs of the model being trained and of the frozen teacher.
    weight : torch.Tensor
        ``(N, *spatial)`` pixel weights, e.g. 1 on unpainted pixels and 0 on strokes.
    """
    log_p = F.log_softmax(logits, dim=1)
    log_q = F.log_softmax(teacher_logits.detach(), dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=1)
    return (kl * weight).sum() / weight.sum().clamp(min=1.0)


def stroke_agreement(teacher_logits: torch.Tensor, target: torch.Tensor,
                     weight: torch.Tensor) -> float | None:
    """Balanced accuracy of the teacher on the painted pixels (mean recall over painted classes).

    ``None`` when no pixel is painted.
    """
    painted = weight > 0
    if not bool(painted.any()):
        return None
    guess = teacher_logits.argmax(dim=1)[painted]
    truth = target[painted]
    recalls = [float((guess[truth == c] == c).float().mean()) for c in torch.unique(truth)]
    return sum(recalls) / len(recalls)


class Prior:
    """The distillation prior as one loss term, trusted as much as the teacher agrees with the strokes.

    The term is ``weight * trust * prior_loss`` on unpainted pixels, where ``trust`` =
    ``clip(2 a - 1, 0, 1)`` and ``a`` is a running mean (factor 0.9) of the teacher's balanced
    accuracy on the painted pixels of each batch: a teacher that agrees with the user keeps
    unpainted areas as they were, and one no better than chance (e.g. on inverted contrast)
    is ignored.

    Parameters
    ----------
    teacher : torch.nn.Module
        The model training started from (copied and frozen here).
    weight : float
        Weight of the term at full trust.
    """

    def __init__(self, teacher: torch.nn.Module, weight: float) -> None:
        self.teacher = frozen_teacher(teacher)
        self.weight = float(weight)
        self.agreement: float | None = None

    @property
    def trust(self) -> float:
        """Current trust in the teacher, 0..1 (1 before any stroke was seen)."""
        a = 1.0 if self.agreement is None else self.agreement
        return min(1.0, max(0.0, 2.0 * a - 1.0))

    def loss(self, logits: torch.Tensor, x: torch.Tensor, scribbles: torch.Tensor) -> torch.Tensor:
        """Return the prior term for a batch: ``x`` the input, ``scribbles`` (0 unpainted, 1.. classes)."""
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        painted = (scribbles > 0).float()
        agreement = stroke_agreement(teacher_logits, (scribbles.long() - 1).clamp(min=0), painted)
        if agreement is not None:
            self.agreement = (agreement if self.agreement is None
                              else 0.9 * self.agreement + 0.1 * agreement)
        return self.weight * self.trust * prior_loss(logits, teacher_logits, 1.0 - painted)


def param_groups(model: torch.nn.Module, spec: dict, lr: float, encoder_scale: float) -> list[dict]:
    """Optimiser parameter groups: the encoder at ``lr * encoder_scale``, the rest at ``lr``.

    Only parameters that require gradients are included; an empty group is left out.
    """
    encoder = {id(p) for m in _nets.encoder_modules(model, spec) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in encoder], "lr": lr},
        {"params": [p for p in trainable if id(p) in encoder], "lr": lr * encoder_scale},
    ]
    return [g for g in groups if g["params"]]


def dilate_strokes(scribbles: np.ndarray, radius: int) -> np.ndarray:
    """Grow every painted class by ``radius`` pixels into unpainted pixels (2D per slice for 3D).

    Pixels reached by two different classes stay unpainted, and painted pixels never change.
    """
    scribbles = np.asarray(scribbles)
    if radius <= 0:
        return scribbles.copy()
    footprint = np.zeros((2 * radius + 1,) * 2, bool)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    footprint[yy**2 + xx**2 <= radius**2] = True
    if scribbles.ndim == 3:
        footprint = footprint[None]
    out = scribbles.copy()
    reach = np.zeros(scribbles.shape, np.int32)  # how many classes reach each unpainted pixel
    grown = np.zeros(scribbles.shape, scribbles.dtype)
    for value in np.unique(scribbles[scribbles > 0]):
        region = ndi.binary_dilation(scribbles == value, footprint) & (scribbles == 0)
        reach += region
        grown[region] = value
    free = (scribbles == 0) & (reach == 1)
    out[free] = grown[free]
    return out


def _stroke_structure(ndim: int, slice_wise: bool) -> np.ndarray:
    """Full connectivity; for ``slice_wise`` 3D arrays, only within a Z slice."""
    structure = ndi.generate_binary_structure(ndim, ndim)
    if slice_wise and ndim == 3:
        structure[0] = structure[2] = False
    return structure


def split_strokes(scribbles: np.ndarray, share: float, rng: np.random.Generator,
                  slice_wise: bool = True) -> np.ndarray:
    """Mask of the strokes held out of training: ``round(share * n)`` of the ``n`` strokes of each class.

    A stroke is a connected component of one painted value (per Z slice when ``slice_wise``).
    A class with at least two strokes holds out at least one and keeps at least one for
    training; a class with one stroke keeps it.
    """
    scribbles = np.asarray(scribbles)
    held = np.zeros(scribbles.shape, bool)
    if share <= 0:
        return held
    structure = _stroke_structure(scribbles.ndim, slice_wise)
    for value in np.unique(scribbles[scribbles > 0]):
        components, n = ndi.label(scribbles == value, structure)
        k = min(n - 1, max(1, round(share * n))) if n >= 2 else 0
        if k:
            chosen = rng.choice(np.arange(1, n + 1), size=k, replace=False)
            held |= np.isin(components, chosen)
    return held


def balanced_accuracy(correct: np.ndarray, total: np.ndarray) -> float | None:
    """Mean recall over the classes with ``total > 0`` (None when no class has a pixel)."""
    seen = total > 0
    if not seen.any():
        return None
    return float(np.mean(correct[seen] / total[seen]))


class HeldOut:
    """The held-out strokes, cut into windows that are predicted whole to score a net.

    Each held-out stroke gets one window: its bounding box plus ``margin`` pixels per side,
    rounded up to the net's ``multiple`` (a single Z slice for a 2D net on a stack).

    Parameters
    ----------
    images : sequence of numpy.ndarray
        Normalised images.
    scribbles, held : sequence of numpy.ndarray
        The scribbles (0 unpainted, 1.. classes) and the masks of their held-out strokes.
    net_ndim : int
        2 or 3, the net's spatial axes.
    multiple : int
        Window sizes are multiples of this (the net's stride).
    n_classes : int
        Classes of the net, background included.
    """

    def __init__(self, images, scribbles, held, net_ndim: int, multiple: int, n_classes: int,
                 margin: int = HOLDOUT_MARGIN) -> None:
        self.n_classes = n_classes
        self.windows: list[tuple[np.ndarray, np.ndarray]] = []
        for image, scribble, mask in zip(images, scribbles, held, strict=True):
            target = np.where(mask, scribble, 0)
            slice_wise = net_ndim == 2 and image.ndim == 3
            components, _ = ndi.label(mask, _stroke_structure(image.ndim, slice_wise))
            for box in ndi.find_objects(components):
                centre = [(sl.start + sl.stop) // 2 for sl in box]
                shape = [-(-(sl.stop - sl.start + 2 * margin) // multiple) * multiple
                         for sl in box]
                if slice_wise:
                    shape[0] = 1
                img = extract(image, centre, shape).astype(np.float32)
                lab = extract(target, centre, shape, fill=0).astype(np.int64)
                if slice_wise:
                    img, lab = img[0], lab[0]
                self.windows.append((img, lab))

    def __len__(self) -> int:
        """Return the number of held-out windows."""
        return len(self.windows)

    @torch.no_grad()
    def score(self, model: torch.nn.Module, device: torch.device | str = "cpu") -> float | None:
        """Balanced accuracy of ``model`` (switched to evaluation mode) on the held-out strokes."""
        model.eval()
        correct = np.zeros(self.n_classes)
        total = np.zeros(self.n_classes)
        for img, lab in self.windows:
            x = torch.from_numpy(img)[None, None].to(device)
            guess = model(x)[0].argmax(0).cpu().numpy()
            painted = lab > 0
            truth = lab[painted] - 1
            keep = truth < self.n_classes
            truth, right = truth[keep], (guess[painted] == lab[painted] - 1)[keep]
            np.add.at(total, truth, 1)
            np.add.at(correct, truth, right)
        return balanced_accuracy(correct, total)


def random_windows(images: list[np.ndarray], patch: tuple[int, ...], count: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Return ``count`` windows of ``patch`` at random places, taking the images in turn.

    A 2D ``patch`` on a 3D image takes a window of one random slice; windows reaching past an
    edge are mirrored there.
    """
    windows = []
    for k in range(count):
        image = images[k % len(images)]
        if len(patch) == 2 and image.ndim == 3:
            image = image[rng.integers(image.shape[0])]
        windows.append(extract(image, [int(rng.integers(n)) for n in image.shape], patch))
    return np.stack(windows)


def norm_layers(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """Return the batch-norm layers that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def adapt_norm_stats(model: torch.nn.Module, windows: torch.Tensor, batch: int) -> int:
    """Re-estimate every batch-norm layer's statistics on ``windows`` of the new images.

    The running means and variances become plain averages over the windows, in batches of
    ``batch`` (AdaBN, Li et al. 2018): a net trained on other images sees the new ones with the
    statistics it would have learnt from them, its weights untouched. Returns the layers renewed.
    """
    layers = norm_layers(model)
    if not layers or len(windows) == 0:
        return 0
    was_training = model.training
    momenta = [layer.momentum for layer in layers]
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches
        layer.train()
    for first in range(0, len(windows), batch):
        model(windows[first:first + batch])
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    model.train(was_training)
    return len(layers)
