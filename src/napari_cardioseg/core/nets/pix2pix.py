"""The pix2pix U-Net generator (seed 000, Isola et al. 2017) as a segmentation net.

Encoder: ``4×4`` stride-2 convolutions with LeakyReLU(0.2) and batch norm (none on the first and
innermost layers); decoder: ``4×4`` stride-2 transposed convolutions with ReLU, batch norm and
dropout on the innermost ``min(3, depth - 1)`` levels; skips by concatenation.

Seed 000 ends the generator with a sigmoid giving a foreground probability ``sigmoid(z)``. For two
classes this net outputs the logits ``[0, z]``: their softmax is ``[1 - sigmoid(z), sigmoid(z)]``,
the same function, so it trains and predicts like every other net here. For more classes the last
layer has one logit per class.
"""

from __future__ import annotations

import torch
from torch import nn


class Pix2PixUNet(nn.Module):
    """pix2pix U-Net generator; inputs must be multiples of ``2**depth``.

    Parameters
    ----------
    in_channels, classes : int
        Input channels and output classes (``classes >= 2``).
    depth : int
        Number of stride-2 levels (8 in pix2pix for 256² images).
    base : int
        Filters of the first layer, doubled per level up to ``8 * base``.
    """

    def __init__(self, in_channels: int, classes: int, depth: int = 6, base: int = 32) -> None:
        super().__init__()
        widths = [base * min(2**i, 8) for i in range(depth)]
        self.down = nn.ModuleList()
        for i, cout in enumerate(widths):
            cin = in_channels if i == 0 else widths[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=i in (0, depth - 1)))
            if 0 < i < depth - 1:
                layers.append(nn.BatchNorm2d(cout))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i in reversed(range(1, depth)):
            cin = widths[i] if i == depth - 1 else 2 * widths[i]
            layers = [nn.ReLU(), nn.ConvTranspose2d(cin, widths[i - 1], 4, stride=2, padding=1,
                                                    bias=False), nn.BatchNorm2d(widths[i - 1])]
            if i >= depth - 3:
                layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))
        self.last = nn.ReLU()
        self.head = self._make_head(2 * widths[0] if depth > 1 else widths[0], classes)

    @staticmethod
    def _make_head(cin: int, classes: int) -> nn.ConvTranspose2d:
        return nn.ConvTranspose2d(cin, 1 if classes == 2 else classes, 4, stride=2, padding=1)

    def replace_head(self, classes: int) -> None:
        """Replace the output layer by a fresh one for ``classes`` classes."""
        self.head = self._make_head(self.head.in_channels, classes).to(self.head.weight.device)

    def encoder_modules(self) -> list[nn.Module]:
        """The downsampling path."""
        return list(self.down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = torch.cat([block(x), skip], dim=1)
        z = self.head(self.last(x))
        if z.shape[1] == 1:
            return torch.cat([torch.zeros_like(z), z], dim=1)
        return z


def build(spec: dict) -> Pix2PixUNet:
    """The generator of ``spec`` (options ``depth``, default 6, and ``base``, default 32)."""
    return Pix2PixUNet(int(spec["in_channels"]), int(spec["classes"]),
                       depth=int(spec.get("depth", 6)), base=int(spec.get("base", 32)))


def encoder(model: Pix2PixUNet) -> list[nn.Module]:
    """The downsampling path (what "freeze encoder" freezes)."""
    return model.encoder_modules()


def replace_head(model: Pix2PixUNet, classes: int) -> None:
    """A fresh output layer for ``classes`` classes, in place."""
    model.replace_head(classes)
