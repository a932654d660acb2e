"""Conditional-GAN training (core.gan): PatchGAN shapes, the two loss terms, and the trainer option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.gan import Adversary, PatchDiscriminator
from napari_cardioseg.core.train import TrainConfig, train
from test_train import FAST, disks


@pytest.mark.parametrize(("ndim", "size", "patches"), [(2, 64, 8), (3, 32, 4)])
def test_patch_discriminator_scores_one_logit_per_patch(ndim, size, patches):
    d = PatchDiscriminator(ndim, 1 + 3)
    image = torch.zeros((2, 1, *(size,) * ndim))
    seg = torch.zeros((2, 3, *(size,) * ndim))
    assert tuple(d(image, seg).shape) == (2, 1, *(patches,) * ndim)  # three stride-2 layers


def test_discriminator_learns_real_from_generated_and_the_generator_term_moves_only_logits():
    torch.manual_seed(0)
    adversary = Adversary(2, 2, weight=0.5, lr=2e-3, device=torch.device("cpu"))
    image = torch.randn(4, 1, 32, 32)
    labels = (image[:, 0] > 0).long() + 1  # complete masks, coded as scribbles: 1 bg, 2 class 1
    logits = torch.zeros(4, 2, 32, 32)  # a generator that is never sure: easy to tell apart
    losses = [adversary.step(image, logits, labels) for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0]
    generated = logits.clone().requires_grad_(True)
    adversary.optimizer.zero_grad(set_to_none=True)
    term = adversary.generator_loss(image, generated, labels)
    term.backward()
    assert generated.grad is not None and float(generated.grad.abs().sum()) > 0
    assert all(p.grad is None for p in adversary.discriminator.parameters())  # D is left alone
    assert float(term.detach()) > 0.5 * np.log(2)  # fooling a trained discriminator is costly


def test_trainer_option_on_full_masks_and_refused_on_strokes():
    image, strokes, truth = disks()
    full = truth.astype(np.uint8) + 1
    result = train([image], [full], steps=6, seed=0, gan_weight=0.1, **FAST)
    assert result.card.training["gan_weight"] == 0.1 and len(result.losses) == 6
    assert np.all(np.isfinite(result.losses))
    with pytest.raises(CardiosegError, match="complete masks"):
        train([image], [strokes], steps=2, seed=0, gan_weight=0.1, **FAST)
    with pytest.raises(CardiosegError, match="gan_weight"):
        TrainConfig(arch="unet2d", gan_weight=-1.0)
