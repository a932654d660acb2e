"""Adapting a pretrained net to new data from a few strokes without forgetting what it knew.

A handful of strokes is quickly memorised: fine-tuning on them alone moves the net away from
what it learnt from dense labels wherever no stroke was painted. Three tools counter that:

- :func:`prior_loss`: a distillation term (Hinton, Vinyals & Dean 2015) that keeps the
  prediction on *unpainted* pixels close to the frozen starting model, as in "Learning without
  Forgetting" (Li & Hoiem 2017); strokes override it where they are painted.
- :func:`param_groups`: a smaller learning rate for the encoder than for the decoder and head
  (discriminative fine-tuning, Howard & Ruder 2018).
- :func:`dilate_strokes`: thicker strokes, grown only into unpainted pixels.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from . import nets as _nets


def frozen_teacher(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``model`` in evaluation mode (batch-norm statistics fixed)."""
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
        """The prior term for a batch: ``x`` the input, ``scribbles`` (0 unpainted, 1.. classes)."""
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
