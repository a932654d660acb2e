"""HighRes3DZMNet (seed 002 §2.5–2.6): HighRes3DNet whose first-layer kernels have zero mean.

Twenty convolution layers: one 3×3×3 layer, three stages of three residual blocks (two
pre-activated 3×3×3 convolutions each) dilated by 1, 2 and 4, and a 1×1×1 gathering layer that
gives the logits. No pooling, so any input size works. The first layer subtracts each kernel's
mean in ``forward`` (a parametrisation: the constraint holds after every optimiser step) and pads
by replication, so adding a constant to the input leaves the output unchanged, borders included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CardiosegError


class ZeroMeanConv3d(nn.Conv3d):
    """3D convolution whose every ``(out, in)`` kernel is used with its mean removed."""

    def effective_weight(self) -> torch.Tensor:
        """The kernels actually applied (zero mean over the spatial taps)."""
        return self.weight - self.weight.mean(dim=(2, 3, 4), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def project(self) -> None:
        """Make the stored weights zero-mean too (so saved files hold the applied kernels)."""
        with torch.no_grad():
            self.weight.copy_(self.effective_weight())


class _ResBlock(nn.Module):
    """Two ``BN-ReLU-conv`` layers with an identity shortcut (channels zero-padded if needed)."""

    def __init__(self, cin: int, cout: int, dilation: int) -> None:
        super().__init__()
        self.extra = cout - cin
        self.body = nn.Sequential(
            nn.BatchNorm3d(cin), nn.ReLU(inplace=True),
            nn.Conv3d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.extra)) if self.extra else x
        return shortcut + self.body(x)


class HighRes3DZMNet(nn.Module):
    """Dilated residual 3D net with a zero-mean input layer.

    Parameters
    ----------
    in_channels, classes : int
        Input channels and output classes (logits).
    channels : sequence of int
        Widths of the three dilated stages (dilation 1, 2, 4).
    blocks : int
        Residual blocks per stage (3 in the paper).
    """

    def __init__(self, in_channels: int, classes: int, channels=(16, 32, 64), blocks: int = 3):
        super().__init__()
        self.first = ZeroMeanConv3d(in_channels, channels[0], 3, padding=1,
                                    padding_mode="replicate", bias=False)
        layers: list[nn.Module] = []
        cin = channels[0]
        for width, dilation in zip(channels, (1, 2, 4), strict=True):
            for _ in range(blocks):
                layers.append(_ResBlock(cin, width, dilation))
                cin = width
        self.stages = nn.Sequential(*layers)
        self.post = nn.Sequential(nn.BatchNorm3d(cin), nn.ReLU(inplace=True))
        self.head = nn.Conv3d(cin, classes, 1)

    def encoder_modules(self) -> list[nn.Module]:
        """The first layer and the dilated stages (everything but the gathering head)."""
        return [self.first, self.stages, self.post]

    def replace_head(self, classes: int) -> None:
        """Replace the gathering layer by a fresh one with ``classes`` outputs."""
        old = self.head
        self.head = nn.Conv3d(old.in_channels, classes, 1).to(old.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.post(self.stages(self.first(x))))


def build(spec: dict) -> HighRes3DZMNet:
    """The net of ``spec`` (options ``channels``, 3 widths, default 16, 32, 64; ``blocks``, 3)."""
    channels = tuple(int(c) for c in spec.get("channels", (16, 32, 64)))
    if len(channels) != 3:
        raise CardiosegError(f"highres3dzm: 'channels' needs 3 widths, got {list(channels)}")
    return HighRes3DZMNet(int(spec["in_channels"]), int(spec["classes"]), channels,
                          blocks=int(spec.get("blocks", 3)))


def encoder(model: HighRes3DZMNet) -> list[nn.Module]:
    """The first layer and the dilated stages (what "freeze encoder" freezes)."""
    return model.encoder_modules()


def replace_head(model: HighRes3DZMNet, classes: int) -> None:
    """A fresh gathering layer with ``classes`` outputs, in place."""
    model.replace_head(classes)
