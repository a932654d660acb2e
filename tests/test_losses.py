"""Masked losses: unlabelled pixels never matter; Dice matches eq. 8 by hand."""

from __future__ import annotations

import math

import pytest
import torch

from napari_cardioseg.core.losses import (
    masked_cross_entropy,
    masked_dice_loss,
    scribble_targets,
    sparse_loss,
)


def _scribbles() -> torch.Tensor:
    s = torch.zeros(2, 8, 8, dtype=torch.int64)
    s[0, 1, 1:6] = 1
    s[0, 5, 2:4] = 2
    s[1, 3:6, 6] = 3
    return s


def test_scribble_targets_convention():
    target, weight = scribble_targets(torch.tensor([[0, 1, 2, 3]]))
    assert target.tolist() == [[0, 0, 1, 2]]
    assert weight.tolist() == [[0.0, 1.0, 1.0, 1.0]]


def test_unlabelled_logits_change_nothing_and_get_no_gradient():
    torch.manual_seed(0)
    s = _scribbles()
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = sparse_loss(logits, s)
    loss.backward()
    unlabelled = (s == 0).unsqueeze(1).expand_as(logits)
    assert torch.all(logits.grad[unlabelled] == 0)
    assert torch.any(logits.grad[~unlabelled] != 0)
    changed = logits.detach().clone()
    changed[unlabelled] = torch.randn(int(unlabelled.sum())) * 100
    assert torch.allclose(sparse_loss(changed, s), loss.detach(), atol=1e-6)


def test_cross_entropy_is_mean_over_labelled_pixels():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 1, 0, 0] = math.log(3.0)  # p(class 1) = 0.75 at pixel 0
    target = torch.tensor([[[1, 0, 0, 0]]])
    weight = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    assert masked_cross_entropy(logits, target, weight).item() == pytest.approx(expected, rel=1e-6)


def test_dice_known_values():
    big = 50.0
    target = torch.tensor([[[0, 1, 1, 0]]])
    weight = torch.ones(1, 1, 4)
    perfect = torch.stack([(target == 0).float(), (target == 1).float()], dim=1) * big
    assert masked_dice_loss(perfect, target, weight).item() == pytest.approx(0.0, abs=1e-5)
    assert masked_dice_loss(-perfect, target, weight).item() == pytest.approx(1.0, abs=1e-5)
    # uniform prediction: p = 0.5 everywhere -> DL = 1 - 2*(4*0.5)/(8*0.5 + 4) = 0.5
    flat = torch.zeros(1, 2, 1, 4)
    assert masked_dice_loss(flat, target, weight).item() == pytest.approx(0.5, abs=1e-5)
    # weights exclude the two wrong pixels -> perfect on the remaining two
    wrong = perfect.clone()
    wrong[0, :, 0, :2] = wrong[0, :, 0, :2].flip(0)
    w = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    assert masked_dice_loss(wrong, target, w).item() == pytest.approx(0.0, abs=1e-5)
    assert masked_dice_loss(wrong, target, weight).item() == pytest.approx(0.5, abs=1e-5)


def test_3d_logits():
    s = torch.zeros(1, 4, 4, 4, dtype=torch.int64)
    s[0, 1, 1, 1] = 1
    s[0, 2, 2, 2] = 2
    logits = torch.zeros(1, 2, 4, 4, 4)
    logits[0, 0, 1, 1, 1] = 20.0
    logits[0, 1, 2, 2, 2] = 20.0
    assert sparse_loss(logits, s).item() == pytest.approx(0.0, abs=1e-5)
