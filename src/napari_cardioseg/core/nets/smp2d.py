"""2D segmentation nets from segmentation-models-pytorch, never with downloaded weights.

The library Croitor Ibrahim et al. 2024 trained their nets with.

Importing this module is cheap: torch and segmentation-models-pytorch are imported only when a net
is built or its head replaced, so the registry can read :data:`SMP_NETS` without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CardiosegError

if TYPE_CHECKING:
    from torch import nn

#: registry name -> (smp architecture, encoder)
SMP_NETS = {
    "unet-vgg11": ("unet", "vgg11"),
    "unetpp-efficientnet-b4": ("unetplusplus", "efficientnet-b4"),
    "fpn-resnet34": ("fpn", "resnet34"),
    "deeplabv3plus-resnet34": ("deeplabv3plus", "resnet34"),
    "unet-resnet18": ("unet", "resnet18"),
    "unet-mobilenet_v2": ("unet", "mobilenet_v2"),
}
DECODER_CHANNELS = (256, 128, 64, 32, 16)
_DEPTH_OPTION = ("unet", "unetplusplus")  # architectures whose encoder depth may be reduced


def encoder_depth(spec: dict) -> int:
    """Return the encoder depth (number of stride-2 stages); only U-Net and UNet++ accept 3 to 5."""
    depth = int(spec.get("encoder_depth", 5))
    arch = SMP_NETS[spec["arch"]][0]
    if depth != 5 and arch not in _DEPTH_OPTION:
        raise CardiosegError(f"{spec['arch']}: encoder_depth must be 5 (got {depth})")
    if not 3 <= depth <= 5:
        raise CardiosegError(f"{spec['arch']}: encoder_depth must be 3, 4 or 5 (got {depth})")
    return depth


def build(spec: dict) -> nn.Module:
    """Build an smp model with random weights mapping ``(N, in, H, W)`` to ``(N, classes, H, W)`` logits."""
    import segmentation_models_pytorch as smp

    arch, encoder = SMP_NETS[spec["arch"]]
    depth = encoder_depth(spec)
    kwargs: dict = {}
    if arch in _DEPTH_OPTION:
        kwargs = {"encoder_depth": depth, "decoder_channels": DECODER_CHANNELS[-depth:]}
    return smp.create_model(
        arch, encoder_name=encoder, encoder_weights=None,
        in_channels=int(spec["in_channels"]), classes=int(spec["classes"]), **kwargs,
    )


def size_multiple(spec: dict) -> int:
    """Input sizes must be multiples of the encoder's total stride."""
    return 2 ** encoder_depth(spec)


def encoder(model: nn.Module) -> list[nn.Module]:
    """Return the smp encoder (the part shared with classification backbones)."""
    return [model.get_submodule("encoder")]


def replace_head(model: nn.Module, classes: int) -> None:
    """Swap the final convolution for a fresh one with ``classes`` outputs."""
    import torch
    from torch import nn

    head = model.get_submodule("segmentation_head")
    old = head[0] if isinstance(head, nn.Sequential) else None
    if not isinstance(head, nn.Sequential) or not isinstance(old, nn.Conv2d):
        raise TypeError("expected an smp model whose segmentation head starts with a Conv2d")
    # torch types a Conv2d's kernel_size and padding as tuples of any length, its constructor as pairs
    new = nn.Conv2d(old.in_channels, classes, old.kernel_size, padding=old.padding)  # type: ignore[arg-type]
    with torch.no_grad():
        head[0] = new.to(old.weight.device)
