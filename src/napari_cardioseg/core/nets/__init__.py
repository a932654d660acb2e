"""Architecture registry: one factory, :func:`build_model`, driven by the spec in a model card.

A spec is a dict ``{"arch": NAME, "in_channels": 1, "classes": C, ...options}`` with ``C >= 2``
(background included). Every model maps ``(N, in_channels, [D,] H, W)`` float32 to
``(N, C, [D,] H, W)`` logits.

Options per architecture: smp U-Net / UNet++ take ``encoder_depth`` (3-5); ``unet2d``/``unet3d``
take ``depth`` and ``base``; ``highres3dzm`` takes ``channels`` (3 widths) and ``blocks``;
``pix2pix`` takes ``depth`` and ``base``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import CardiosegError
from . import smp2d
from .highres3dzm import HighRes3DZMNet, ZeroMeanConv3d
from .pix2pix import Pix2PixUNet
from .unet import UNet


@dataclass(frozen=True)
class Architecture:
    """How to build one architecture and what its inputs must look like."""

    build: Callable[[dict], nn.Module]
    ndim: int
    size_multiple: Callable[[dict], int]
    description: str


def _own_replace_head(model: nn.Module, classes: int) -> None:
    if isinstance(model, Pix2PixUNet):
        model.set_classes(classes)
        return
    old = model.head
    model.head = type(old)(old.in_channels, classes, 1).to(old.weight.device)


def _unet(ndim: int) -> Callable[[dict], nn.Module]:
    def build(spec: dict) -> nn.Module:
        return UNet(ndim, int(spec["in_channels"]), int(spec["classes"]),
                    depth=int(spec.get("depth", 3)), base=int(spec.get("base", 16)))
    return build


def _highres(spec: dict) -> nn.Module:
    channels = tuple(int(c) for c in spec.get("channels", (16, 32, 64)))
    if len(channels) != 3:
        raise CardiosegError(f"highres3dzm: 'channels' needs 3 widths, got {list(channels)}")
    return HighRes3DZMNet(int(spec["in_channels"]), int(spec["classes"]), channels,
                          blocks=int(spec.get("blocks", 3)))


def _pix2pix(spec: dict) -> nn.Module:
    return Pix2PixUNet(int(spec["in_channels"]), int(spec["classes"]),
                       depth=int(spec.get("depth", 6)), base=int(spec.get("base", 32)))


ARCHITECTURES: dict[str, Architecture] = {
    **{name: Architecture(smp2d.build, 2, smp2d.size_multiple, f"smp {arch} with {enc} encoder")
       for name, (arch, enc) in smp2d.SMP_NETS.items()},
    "unet2d": Architecture(_unet(2), 2, lambda s: 2 ** int(s.get("depth", 3)),
                           "small plain 2D U-Net"),
    "unet3d": Architecture(_unet(3), 3, lambda s: 2 ** int(s.get("depth", 3)),
                           "3D U-Net (seed 004)"),
    "highres3dzm": Architecture(_highres, 3, lambda s: 1,
                                "HighRes3DZMNet, dilated residual 3D net (seed 002)"),
    "pix2pix": Architecture(_pix2pix, 2, lambda s: 2 ** int(s.get("depth", 6)),
                            "pix2pix U-Net generator (seed 000)"),
}


def architecture(spec: dict) -> Architecture:
    """The registry entry for ``spec``, after checking the common spec fields."""
    if not isinstance(spec, dict) or "arch" not in spec:
        raise CardiosegError(f"a model spec must be a dict with an 'arch' key, got {spec!r}")
    arch = ARCHITECTURES.get(spec["arch"])
    if arch is None:
        raise CardiosegError(
            f"unknown architecture {spec['arch']!r}; choose one of: {', '.join(ARCHITECTURES)}"
        )
    for key, low in (("in_channels", 1), ("classes", 2)):
        value = spec.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise CardiosegError(f"spec {key!r} must be an integer >= {low}, got {value!r}")
    return arch


def build_model(spec: dict) -> nn.Module:
    """A freshly initialised model for ``spec`` (no downloads: smp encoders get no weights)."""
    arch = architecture(spec)
    try:
        return arch.build(spec)
    except CardiosegError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise CardiosegError(f"{spec['arch']}: invalid options in spec {spec}: {exc}") from exc


def spec_ndim(spec: dict) -> int:
    """2 for 2D (``YX``) nets, 3 for 3D (``ZYX``) nets."""
    return architecture(spec).ndim


def size_multiple(spec: dict) -> int:
    """Every spatial input size must be a multiple of this (the net's total stride)."""
    return int(architecture(spec).size_multiple(spec))


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    """The modules to freeze for "freeze encoder" (the head and decoder stay trainable)."""
    if hasattr(model, "encoder_modules"):
        return model.encoder_modules()
    return smp2d.encoder(model)


def replace_head(model: nn.Module, spec: dict, classes: int) -> tuple[nn.Module, dict]:
    """Give ``model`` a fresh ``classes``-way output layer, keeping every other weight.

    Used for transfer learning (e.g. binary → three classes, seed 002). Returns the same model
    object and the updated spec.
    """
    architecture(spec)
    new_spec = {**spec, "classes": int(classes)}
    architecture(new_spec)
    if spec["arch"] in smp2d.SMP_NETS:
        smp2d.replace_head(model, int(classes))
    else:
        _own_replace_head(model, int(classes))
    return model, new_spec


def zero_mean_constraint(model: nn.Module) -> None:
    """Re-project zero-mean kernels (HighRes3DZMNet's first layer); a no-op for other nets.

    The constraint already holds in every forward pass (parametrisation); projecting keeps the
    stored weights equal to the applied ones, so saved files hold zero-mean kernels.
    """
    for module in model.modules():
        if isinstance(module, ZeroMeanConv3d):
            module.project()


__all__ = [
    "ARCHITECTURES", "Architecture", "architecture", "build_model", "encoder_modules",
    "replace_head", "size_multiple", "spec_ndim", "zero_mean_constraint",
]
