"""Architecture registry: one row per net holds everything a caller needs to know about it.

A spec is a dict ``{"arch": NAME, "in_channels": 1, "classes": C, ...options}`` with ``C >= 2``
(background included). Every model maps ``(N, in_channels, [D,] H, W)`` float32 to
``(N, C, [D,] H, W)`` logits.

Options per architecture: smp U-Net / UNet++ take ``encoder_depth`` (3-5); ``unet2d``/``unet3d``
take ``depth`` and ``base``; ``highres3dzm`` takes ``channels`` (3 widths) and ``blocks``;
``pix2pix`` takes ``depth`` and ``base``.

Adding an architecture: write its module (a ``torch.nn.Module``, a builder ``build(spec)`` and
the functions ``encoder(model)`` and ``replace_head(model, classes)``), add one
:class:`Architecture` row to :data:`ARCHITECTURES` naming the builder, and one subclass of the
shared ``NetTester`` in ``tests/test_nets.py``.

Importing this package is cheap: the rows hold what card validation and listings need (names,
dimensions, strides, option bounds, descriptions) and name their builders by module, so torch and
segmentation-models-pytorch are imported only when a net is built or its receptive field measured.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import CardiosegError
from . import smp2d

if TYPE_CHECKING:
    from torch import nn

#: longest probe (px along one axis) used to measure a receptive field, for 2D and 3D nets
PROBE_MAX = {2: 1024, 3: 256}


@dataclass(frozen=True)
class Architecture:
    """One registry row: how to build a net and what callers need to know about it.

    Attributes
    ----------
    builder : str or callable
        ``"module:function"``: ``function(spec) -> nn.Module`` in the submodule ``module`` of this
        package builds the net with random weights (never downloads); the same submodule
        defines ``encoder(model) -> list of nn.Module`` (what "freeze encoder" freezes) and
        ``replace_head(model, classes)`` (a fresh ``classes``-way output layer, in place). It
        is imported only when needed. Rows added at run time may give the function itself;
        its module then defines ``encoder`` and ``replace_head``.
    ndim : int
        2 for ``YX`` nets, 3 for ``ZYX`` nets.
    size_multiple : callable
        ``size_multiple(spec) -> int``: every spatial input size must be a multiple of it.
    description : str
        One line for lists.
    bounds : mapping
        Option name -> ``(low, high)``: the integer values (or every item of a list value) a spec
        may give, checked before anything is built (see :func:`check_options`).
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
    head : str or None
        Dotted name (``nn.Module.get_submodule``) of the output convolution that maps the last
        features to the logits, e.g. for the linear probe of :mod:`core.probe_head`; None when
        the net has no such layer (e.g. a transposed-convolution head).
    """

    builder: str | Callable[[dict], nn.Module]
    ndim: int
    size_multiple: Callable[[dict], int]
    description: str
    bounds: Mapping[str, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))
    scratch: Mapping[str, Any] | None = field(default_factory=lambda: MappingProxyType({}))
    recommended: bool = False
    global_context: bool = False
    head: str | None = None

    def module(self) -> ModuleType:
        """Import and return the module implementing the net (this imports torch)."""
        if callable(self.builder):
            return importlib.import_module(self.builder.__module__)
        return importlib.import_module(f"{__name__}.{self.builder.partition(':')[0]}")

    def build(self, spec: dict) -> nn.Module:
        """Build a net for ``spec`` with random weights."""
        if callable(self.builder):
            return self.builder(spec)
        return getattr(self.module(), self.builder.partition(":")[2])(spec)


def _depth_multiple(default: int) -> Callable[[dict], int]:
    return lambda spec: 2 ** int(spec.get("depth", default))


def _smp(name: str) -> Architecture:
    arch, encoder = smp2d.SMP_NETS[name]
    return Architecture(
        "smp2d:build", 2, smp2d.size_multiple, f"smp {arch} with {encoder} encoder",
        bounds=MappingProxyType({"encoder_depth": (3, 5)}),
        recommended=name == "unet-mobilenet_v2",
        global_context=arch in ("deeplabv3plus", "fpn") or encoder.startswith("efficientnet"),
        head="segmentation_head.0",
    )


ARCHITECTURES: dict[str, Architecture] = {
    "unet2d": Architecture(
        "unet:build_2d", 2, _depth_multiple(3), "small plain 2D U-Net",
        bounds=MappingProxyType({"depth": (1, 6), "base": (1, 128)}),
        scratch=MappingProxyType({"depth": 3, "base": 16}), recommended=True, head="head"),
    "unet3d": Architecture(
        "unet:build_3d", 3, _depth_multiple(3), "3D U-Net (Çiçek et al. 2016)",
        bounds=MappingProxyType({"depth": (1, 5), "base": (1, 64)}),
        scratch=MappingProxyType({"depth": 3, "base": 8}), recommended=True, head="head"),
    **{name: _smp(name) for name in smp2d.SMP_NETS},
    "highres3dzm": Architecture(
        "highres3dzm:build", 3, lambda spec: 1,
        "HighRes3DZMNet, dilated residual 3D net with zero-mean input kernels",
        bounds=MappingProxyType({"blocks": (1, 8), "channels": (1, 256)}), head="head"),
    "pix2pix": Architecture(
        "pix2pix:build", 2, _depth_multiple(6), "pix2pix U-Net generator (Isola et al. 2017)",
        bounds=MappingProxyType({"depth": (1, 8), "base": (1, 128)})),
}


def architecture(spec: dict) -> Architecture:
    """Return the registry entry for ``spec``, after checking the common spec fields."""
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


def check_options(spec: dict) -> Architecture:
    """:func:`architecture`, then every bounded option of ``spec`` checked (nothing is built)."""
    arch = architecture(spec)
    for key, (low, high) in arch.bounds.items():
        value = spec.get(key)
        for item in value if isinstance(value, list) else [] if value is None else [value]:
            if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
                raise CardiosegError(f"{spec['arch']}: spec {key!r} must be an integer in "
                                     f"{low}..{high}, got {item!r}")
    return arch


def build_model(spec: dict) -> nn.Module:
    """Build a freshly initialised model for ``spec`` (no downloads: smp encoders get no weights)."""
    arch = check_options(spec)
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
    """Return the spec for training architecture ``name`` from scratch with ``classes`` classes."""
    arch = architecture({"arch": name, "in_channels": 1, "classes": max(int(classes), 2)})
    if arch.scratch is None:
        raise CardiosegError(f"{name} is not offered for training from scratch")
    return {"arch": name, "in_channels": 1, "classes": int(classes), **arch.scratch}


def scratch_choices() -> tuple[list[str], list[str]]:
    """Architectures offered for training from scratch: (recommended, advanced), in registry order."""
    offered = [(name, a) for name, a in ARCHITECTURES.items() if a.scratch is not None]
    return ([n for n, a in offered if a.recommended], [n for n, a in offered if not a.recommended])


def encoder_modules(model: nn.Module, spec: dict) -> list[nn.Module]:
    """Return the modules to freeze for "freeze encoder" (the head and decoder stay trainable)."""
    return architecture(spec).module().encoder(model)


def head_module(model: nn.Module, spec: dict) -> nn.Module | None:
    """Return the output convolution named by the registry row (None when it names none)."""
    name = architecture(spec).head
    return None if name is None else model.get_submodule(name)


def replace_head(model: nn.Module, spec: dict, classes: int) -> tuple[nn.Module, dict]:
    """Give ``model`` a fresh ``classes``-way output layer, keeping every other weight.

    Used for transfer learning (e.g. binary → three classes). Returns the same model object and
    the updated spec.
    """
    arch = architecture(spec)
    new_spec = {**spec, "classes": int(classes)}
    architecture(new_spec)
    arch.module().replace_head(model, int(classes))
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
    return _measured_field(json.dumps({**spec, "classes": 2}, sort_keys=True))


@functools.lru_cache(maxsize=32)
def _measured_field(key: str) -> tuple[int, ...]:
    from .probe import measure

    return measure(key)


def zero_mean_constraint(model: nn.Module) -> None:
    """Re-project zero-mean kernels (HighRes3DZMNet's first layer); a no-op for other nets.

    The constraint already holds in every forward pass (parametrisation); projecting keeps the
    stored weights equal to the applied ones, so saved files hold zero-mean kernels.
    """
    from .highres3dzm import ZeroMeanConv3d

    for module in model.modules():
        if isinstance(module, ZeroMeanConv3d):
            module.project()


__all__ = [
    "ARCHITECTURES", "PROBE_MAX", "Architecture", "architecture", "build_model", "check_options",
    "encoder_modules", "head_module", "receptive_field", "replace_head", "scratch_choices", "scratch_spec",
    "size_multiple", "spec_ndim", "zero_mean_constraint",
]
