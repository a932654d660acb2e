"""A plain U-Net for 2D or 3D inputs (the 3D U-Net of seed 004, Çiçek et al. 2016).

Each level has two ``conv-BN-ReLU`` blocks; downsampling by max pooling, upsampling by transposed
convolution, skip connections by concatenation, a ``1×1(×1)`` convolution head giving logits.
"""

from __future__ import annotations

import torch
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_BN = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_UP = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _double_conv(ndim: int, cin: int, cout: int) -> nn.Sequential:
    conv, bn = _CONV[ndim], _BN[ndim]
    return nn.Sequential(
        conv(cin, cout, 3, padding=1, bias=False), bn(cout), nn.ReLU(inplace=True),
        conv(cout, cout, 3, padding=1, bias=False), bn(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``depth`` poolings; inputs must be multiples of ``2**depth``.

    Parameters
    ----------
    ndim : int
        2 or 3 spatial dimensions.
    in_channels, classes : int
        Input channels and output classes (logits).
    depth : int
        Number of poolings.
    base : int
        Channels at full resolution, doubled at each level.
    """

    def __init__(self, ndim: int, in_channels: int, classes: int, depth: int = 3,
                 base: int = 16) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_double_conv(ndim, cin, cout)
             for cin, cout in zip([in_channels, *widths[:-1]], widths, strict=True)]
        )
        self.pool = _POOL[ndim](2)
        self.up = nn.ModuleList(
            [_UP[ndim](widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))]
        )
        self.decode = nn.ModuleList(
            [_double_conv(ndim, 2 * widths[i], widths[i]) for i in reversed(range(depth))]
        )
        self.head = _CONV[ndim](widths[0], classes, 1)

    def encoder_modules(self) -> list[nn.Module]:
        """The contracting path."""
        return list(self.down)

    def replace_head(self, classes: int) -> None:
        """Replace the output convolution by a fresh one with ``classes`` outputs."""
        old = self.head
        self.head = type(old)(old.in_channels, classes, 1).to(old.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, block, skip in zip(self.up, self.decode, reversed(skips[:-1]), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_2d(spec: dict) -> UNet:
    """The 2D U-Net of ``spec`` (options ``depth``, default 3, and ``base``, default 16)."""
    return _build(2, spec)


def build_3d(spec: dict) -> UNet:
    """The 3D U-Net of ``spec`` (options ``depth``, default 3, and ``base``, default 16)."""
    return _build(3, spec)


def _build(ndim: int, spec: dict) -> UNet:
    return UNet(ndim, int(spec["in_channels"]), int(spec["classes"]),
                depth=int(spec.get("depth", 3)), base=int(spec.get("base", 16)))


def encoder(model: UNet) -> list[nn.Module]:
    """The contracting path (what "freeze encoder" freezes)."""
    return model.encoder_modules()


def replace_head(model: UNet, classes: int) -> None:
    """A fresh ``classes``-way output convolution, in place."""
    model.replace_head(classes)

