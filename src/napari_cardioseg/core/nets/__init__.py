"""Architecture registry: one row per net holds everything a caller needs to know about it.

A spec is a dict ``{"arch": NAME, "in_channels": 1, "classes": C, ...options}`` with ``C >= 2``
(background included). Every model maps ``(N, in_channels, [D,] H, W)`` float32 to
``(N, C, [D,] H, W)`` logits.

Options per architecture: smp U-Net / UNet++ take ``encoder_depth`` (3-5); ``unet2d``/``unet3d``
take ``depth`` and ``base``; ``highres3dzm`` takes ``channels`` (3 widths) and ``blocks``;
``pix2pix`` takes ``depth`` and ``base``.

Adding an architecture: write its module (a ``torch.nn.Module`` plus how to find its encoder and
replace its head), add one :class:`Architecture` row to :data:`ARCHITECTURES`, and one subclass of
the shared ``NetTester`` in ``tests/test_nets.py``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..errors import CardiosegError
from . import smp2d
from .highres3dzm import HighRes3DZMNet, ZeroMeanConv3d
from .pix2pix import Pix2PixUNet
from .unet import UNet

#: longest probe (px along one axis) used to measure a receptive field, for 2D and 3D nets
PROBE_MAX = {2: 1024, 3: 256}


@dataclass(frozen=True)
class Architecture:
    """One registry row: how to build a net and what callers need to know about it.

    Attributes
    ----------
    build : callable
        ``build(spec) -> nn.Module`` with random weights (never downloads).
    ndim : int
        2 for ``YX`` nets, 3 for ``ZYX`` nets.
    size_multiple : callable
        ``size_multiple(spec) -> int``: every spatial input size must be a multiple of it.
    encoder : callable
        ``encoder(model) -> list of nn.Module``: what "freeze encoder" freezes.
    replace_head : callable
        ``replace_head(model, classes)``: a fresh ``classes``-way output layer, in place.
    description : str
        One line for lists.
    scratch : mapping or None
        Options (besides ``in_channels``/``classes``) used when training it from scratch; None
        when it is not offered for training from scratch.
    recommended : bool
        Listed first in the GUI; the others are "advanced".
    global_context : bool
        Every output pixel depends on the whole input (DeepLabV3+'s image pooling, Chen et al.
        2018; EfficientNet's squeeze-and-excitation, Hu et al. 2018; the group normalisation in
        smp's FPN decoder, Wu & He 2018), so no finite receptive field exists;
        :func:`receptive_field` reports :data:`PROBE_MAX` for it.
    """

    build: Callable[[dict], nn.Module]
    ndim: int
    size_multiple: Callable[[dict], int]
    encoder: Callable[[nn.Module], list[nn.Module]]
    replace_head: Callable[[nn.Module, int], None]
    description: str
    scratch: Mapping[str, Any] | None = field(default_factory=lambda: MappingProxyType({}))
    recommended: bool = False
    global_context: bool = False


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


def _depth_multiple(default: int) -> Callable[[dict], int]:
    return lambda spec: 2 ** int(spec.get("depth", default))


def _smp(name: str) -> Architecture:
    arch, encoder = smp2d.SMP_NETS[name]
    return Architecture(
        smp2d.build, 2, smp2d.size_multiple, smp2d.encoder, smp2d.replace_head,
        f"smp {arch} with {encoder} encoder",
        recommended=name == "unet-mobilenet_v2",
        global_context=arch in ("deeplabv3plus", "fpn") or encoder.startswith("efficientnet"),
    )


ARCHITECTURES: dict[str, Architecture] = {
    "unet2d": Architecture(
        _unet(2), 2, _depth_multiple(3), UNet.encoder_modules, UNet.replace_head,
        "small plain 2D U-Net", scratch=MappingProxyType({"depth": 3, "base": 16}),
        recommended=True),
    "unet3d": Architecture(
        _unet(3), 3, _depth_multiple(3), UNet.encoder_modules, UNet.replace_head,
        "3D U-Net (Çiçek et al. 2016)", scratch=MappingProxyType({"depth": 3, "base": 8}),
        recommended=True),
    **{name: _smp(name) for name in smp2d.SMP_NETS},
    "highres3dzm": Architecture(
        _highres, 3, lambda spec: 1, HighRes3DZMNet.encoder_modules, HighRes3DZMNet.replace_head,
        "HighRes3DZMNet, dilated residual 3D net with zero-mean input kernels"),
    "pix2pix": Architecture(
        _pix2pix, 2, _depth_multiple(6), Pix2PixUNet.encoder_modules, Pix2PixUNet.replace_head,
        "pix2pix U-Net generator (Isola et al. 2017)"),
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


def scratch_spec(name: str, classes: int) -> dict:
    """The spec for training architecture ``name`` from scratch with ``classes`` classes."""
    arch = architecture({"arch": name, "in_channels": 1, "classes": max(int(classes), 2)})
    if arch.scratch is None:
        raise CardiosegError(f"{name} is not offered for training from scratch")
    return {"arch": name, "in_channels": 1, "classes": int(classes), **arch.scratch}


def scratch_choices() -> tuple[list[str], list[str]]:
    """Architectures offered for training from scratch: (recommended, advanced), in registry order."""
    offered = [(name, a) for name, a in ARCHITECTURES.items() if a.scratch is not None]
    return ([n for n, a in offered if a.recommended], [n for n, a in offered if not a.recommended])


def encoder_modules(model: nn.Module, spec: dict) -> list[nn.Module]:
    """The modules to freeze for "freeze encoder" (the head and decoder stay trainable)."""
    return architecture(spec).encoder(model)


def replace_head(model: nn.Module, spec: dict, classes: int) -> tuple[nn.Module, dict]:
    """Give ``model`` a fresh ``classes``-way output layer, keeping every other weight.

    Used for transfer learning (e.g. binary → three classes). Returns the same model object and
    the updated spec.
    """
    arch = architecture(spec)
    new_spec = {**spec, "classes": int(classes)}
    architecture(new_spec)
    arch.replace_head(model, int(classes))
    return model, new_spec


def receptive_field(spec: dict) -> tuple[int, ...]:
    """Input pixels per axis that one output pixel depends on (cached per spec).

    Measured once per process from the gradient of one output pixel with respect to a random
    input, on a randomly initialised net in eval mode: its support along a long, narrow probe
    (doubled until the support stays inside it, at most :data:`PROBE_MAX` px). Nets whose
    context spans the whole input (``global_context``) or exceeds the longest probe report
    :data:`PROBE_MAX`. The class count does not matter and is ignored.
    """
    architecture(spec)
    key = json.dumps({**spec, "classes": 2}, sort_keys=True)
    return _measured_field(key)


@functools.lru_cache(maxsize=32)
def _measured_field(key: str) -> tuple[int, ...]:
    spec = json.loads(key)
    arch = architecture(spec)
    longest = PROBE_MAX[arch.ndim]
    if arch.global_context:
        return (longest,) * arch.ndim
    multiple = size_multiple(spec)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # caller's random state kept
        torch.manual_seed(0)
        model = build_model(spec).eval()
        # 2D nets here use square kernels (Y behaves as X); 3D nets are measured along Z and X
        axes = [0] if arch.ndim == 2 else [0, arch.ndim - 1]
        sizes = {axis: _probe_axis(model, arch.ndim, axis, multiple, longest) for axis in axes}
    return (sizes[0],) * 2 if arch.ndim == 2 else (sizes[0], sizes[2], sizes[2])


def _probe_axis(model: nn.Module, ndim: int, axis: int, multiple: int, longest: int) -> int:
    """Gradient support along ``axis`` of the output pixel at the centre of a narrow probe."""
    length = min(longest, max(2 * multiple, -(-longest // 4 // multiple) * multiple))
    while True:
        width = multiple if ndim == 3 else -(-32 // multiple) * multiple  # room for 2D kernels
        shape = [width] * ndim
        shape[axis] = length
        x = torch.randn(2, 1, *shape, requires_grad=True)
        centre = [width // 2] * ndim
        centre[axis] = (length // 2) // multiple * multiple
        model(x)[(slice(None), slice(None), *centre)].sum().backward()
        profile = x.grad.abs().sum(dim=[d for d in range(ndim + 2) if d != axis + 2])
        support = torch.nonzero(profile).flatten()
        low, high = int(support.min()), int(support.max())
        if (low > 0 and high < length - 1) or length >= longest:
            return min(high - low + 1, longest)
        length = min(2 * length, longest)


def zero_mean_constraint(model: nn.Module) -> None:
    """Re-project zero-mean kernels (HighRes3DZMNet's first layer); a no-op for other nets.

    The constraint already holds in every forward pass (parametrisation); projecting keeps the
    stored weights equal to the applied ones, so saved files hold zero-mean kernels.
    """
    for module in model.modules():
        if isinstance(module, ZeroMeanConv3d):
            module.project()


__all__ = [
    "ARCHITECTURES", "PROBE_MAX", "Architecture", "architecture", "build_model",
    "encoder_modules", "receptive_field", "replace_head", "scratch_choices", "scratch_spec",
    "size_multiple", "spec_ndim", "zero_mean_constraint",
]
