"""Losses that only see labelled pixels: masked cross-entropy and masked Dice.

The Dice loss is that of Žerovnik Mekuč et al. 2020.

Scribble convention (CONTRIBUTING.md): 0 = unlabelled (ignored), 1 = background, 2 = first class, ...
Class index = scribble value - 1, so a model with ``C`` output channels accepts scribbles 1..C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scribble_targets(scribbles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a scribble tensor into class indices and a 0/1 weight mask.

    Parameters
    ----------
    scribbles : torch.Tensor
        ``(N, *spatial)`` integer tensor in the scribble convention.

    Returns
    -------
    target : torch.Tensor
        ``(N, *spatial)`` int64 class indices (0 where unlabelled; those carry no weight).
    weight : torch.Tensor
        ``(N, *spatial)`` float32, 1 on labelled pixels and 0 elsewhere.
    """
    weight = (scribbles > 0).float()
    target = (scribbles.long() - 1).clamp(min=0)
    return target, weight


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy averaged over pixels with weight ``w_n``: ``Σ w_n CE_n / Σ w_n``.

    Returns zero (with a gradient path) when no pixel carries weight.
    """
    ce = F.cross_entropy(logits, target, reduction="none")
    return (ce * weight).sum() / weight.sum().clamp(min=1.0)


def masked_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Weighted Dice loss of Žerovnik Mekuč et al. 2020, eq. 8.

    ``DL = 1 - 2 Σ_l Σ_n w_n p_ln r_ln / Σ_l Σ_n w_n (p_ln + r_ln)`` with ``p`` the softmax
    probabilities, ``r`` the one-hot target and ``w`` the pixel weights (0 = ignored).
    """
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    w = weight.unsqueeze(1)
    intersection = (w * probs * onehot).sum()
    total = (w * (probs + onehot)).sum()
    return 1.0 - 2.0 * intersection / (total + eps)


def sparse_loss(logits: torch.Tensor, scribbles: torch.Tensor) -> torch.Tensor:
    """Masked cross-entropy plus masked Dice on a batch of scribble patches.

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, C, *spatial)`` raw network output.
    scribbles : torch.Tensor
        ``(N, *spatial)`` scribbles (0 ignored, 1..C labelled).
    """
    target, weight = scribble_targets(scribbles)
    return masked_cross_entropy(logits, target, weight) + masked_dice_loss(logits, target, weight)
