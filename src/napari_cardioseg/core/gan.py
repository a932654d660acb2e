"""Conditional-GAN training (pix2pix, Isola et al. 2017; 3D: Vox2Vox, Cirillo et al. 2021).

The segmentation net is the generator; a PatchGAN discriminator sees the image together with a
segmentation (one-hot truth, or the generator's softmax) and scores every patch of about its
receptive field as real or generated. The generator's loss gains ``weight`` times the
adversarial term (non-saturating BCE), next to the usual segmentation loss, as pix2pix pairs
its L1 term with the adversarial one. The discriminator needs complete masks, so this trains on
dense labels (the recipes, ``cardioseg train`` with a full mask), not on strokes
(:func:`check_complete`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CardiosegError


def check_complete(scribbles: list) -> None:
    """Refuse label images with unlabelled pixels (0): the discriminator needs complete masks."""
    if any(bool((s == 0).any()) for s in scribbles):
        raise CardiosegError("cGAN training needs complete masks (every pixel labelled, as mask + "
                             "1); strokes leave pixels unlabelled: train them without it")


class PatchDiscriminator(nn.Module):
    """PatchGAN: strided convolutions to one real/generated logit per patch (2D or 3D).

    Parameters
    ----------
    ndim : int
        2 or 3.
    in_channels : int
        Image channels plus segmentation channels (classes).
    base : int
        Channels of the first layer, doubled at each of the ``layers`` strided layers.
    """

    def __init__(self, ndim: int, in_channels: int, base: int = 32, layers: int = 3) -> None:
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        norm = nn.InstanceNorm2d if ndim == 2 else nn.InstanceNorm3d
        blocks: list[nn.Module] = [conv(in_channels, base, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2)]
        channels = base
        for i in range(1, layers):
            out = base * 2 ** min(i, 3)
            blocks += [conv(channels, out, 4, stride=2, padding=1), norm(out, affine=True),
                       nn.LeakyReLU(0.2)]
            channels = out
        blocks += [conv(channels, 1, 3, padding=1)]
        self.net = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor, segmentation: torch.Tensor) -> torch.Tensor:
        """Patch logits for an ``(N, 1, ...)`` image and an ``(N, C, ...)`` segmentation."""
        return self.net(torch.cat([image, segmentation], dim=1))


class Adversary:
    """The discriminator, its optimiser and the two loss terms of one training run.

    Parameters
    ----------
    ndim, classes : int
        Spatial dimensions and classes of the generator.
    weight : float
        Weight of the adversarial term in the generator's loss (> 0).
    lr : float
        Discriminator learning rate (Adam, betas 0.5 / 0.999 as in pix2pix).
    device : torch.device
        Where the discriminator lives.
    """

    def __init__(self, ndim: int, classes: int, weight: float, lr: float,
                 device: torch.device) -> None:
        if not weight > 0:
            raise CardiosegError(f"the adversarial weight must be > 0, got {weight}")
        self.classes = int(classes)
        self.weight = float(weight)
        self.discriminator = PatchDiscriminator(ndim, 1 + self.classes).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr,
                                          betas=(0.5, 0.999))

    def _real(self, labels: torch.Tensor) -> torch.Tensor:
        """One-hot truth from scribble-coded labels (1 = background, 2 = first class, ...).

        Unlabelled pixels (0: padding at image borders after augmentation) are all-zero, in
        the generated input too (:meth:`_generated`), so they tell real from generated apart.
        """
        onehot = F.one_hot((labels - 1).clamp(min=0), self.classes).movedim(-1, 1).float()
        return onehot * (labels > 0).unsqueeze(1)

    @staticmethod
    def _generated(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1) * (labels > 0).unsqueeze(1)

    def generator_loss(self, image: torch.Tensor, logits: torch.Tensor,
                       labels: torch.Tensor) -> torch.Tensor:
        """``weight`` x BCE(D(image, softmax(logits)), real): the generator tries to pass as real."""
        self.discriminator.requires_grad_(False)
        try:
            fake = self.discriminator(image, self._generated(logits, labels))
        finally:
            self.discriminator.requires_grad_(True)
        return self.weight * F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))

    def step(self, image: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """One discriminator update on real (truth) and generated (detached) pairs; its loss."""
        real = self.discriminator(image, self._real(labels))
        fake = self.discriminator(image, self._generated(logits.detach(), labels))
        loss = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                      + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())
