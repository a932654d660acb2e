"""Run a bioimage.io model package (2D/3D single-channel semantic segmentation) in our predictor.

:func:`load_bioimageio` reads a package (``.zip``, ``rdf.yaml`` or its folder; spec 0.4 packages
are converted to 0.5 by bioimageio.spec) and returns a ``torch.nn.Module`` plus a
:class:`~napari_cardioseg.core.models.ModelCard`, so :func:`predict.predict_generator` runs it
through our sliding window unchanged:

- the package's first statistics-based preprocessing step (``scale_range`` → our ``percentile``,
  ``zero_mean_unit_variance`` → ``zscore``) becomes the card's normalisation, fitted once on the
  whole image; element-wise steps after it (``clip``, ``scale_linear``,
  ``fixed_zero_mean_unit_variance``, ``sigmoid``) run inside the module on each tile;
- tiling constraints: tiles are multiples of the input's size ``step`` (the card's stride); the
  module pads each tile by the output ``halo`` on every side (mirror) and up to a valid size
  (``min + k * step``), runs the net and crops back, so halo pixels are never blended in;
- post-processing (``sigmoid``, ``softmax``, ``clip``, ``scale_linear``, ``binarize``) runs in
  the module; the result is read as probabilities: one channel is the foreground probability,
  several channels are per-class probabilities (channel 0 = background). Whether an output is
  already a probability or still logits is decided from the package's own test output.

Weights run with ONNX Runtime (``onnx``) or TorchScript (``torchscript``); ``pytorch_state_dict``
weights would need executing the package's Python source and are refused. Anything else (several
inputs or outputs, more than one input channel, time or index axes, outputs of another size than
the input) raises :class:`CardiosegError` naming the unsupported part.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import nets
from .errors import CardiosegError
from .models import ModelCard

#: registry names of imported packages (2D and 3D); ``spec["multiple"]`` is the tile stride
ARCHS = {2: "bioimageio-2d", 3: "bioimageio-3d"}
_UNIT_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "angstrom": 1e-4}


def _cannot_build(spec: dict) -> nn.Module:
    raise CardiosegError("a bioimage.io model is rebuilt from its package: use load_bioimageio(path)")


#: registry entries that let ModelCard and predict accept imported models (added on first load)
REGISTRY = {
    name: nets.Architecture(
        builder=_cannot_build, ndim=ndim, size_multiple=lambda s: int(s.get("multiple", 1)),
        description="bioimage.io package", scratch=None,
    )
    for ndim, name in ARCHS.items()
}


def register() -> None:
    """Add :data:`REGISTRY` to ``nets.ARCHITECTURES`` (done by :func:`load_bioimageio`)."""
    for name, arch in REGISTRY.items():
        nets.ARCHITECTURES.setdefault(name, arch)


def is_bioimageio(path: str | os.PathLike) -> bool:
    """Tell whether ``path`` is a ``.zip``, an ``rdf.yaml`` / ``*.bioimageio.yaml`` or a folder with one."""
    p = Path(path)
    if p.is_dir():
        return (p / "rdf.yaml").is_file() or any(p.glob("*bioimageio.yaml"))
    return p.is_file() and (p.suffix == ".zip" or p.name == "rdf.yaml"
                            or p.name.endswith("bioimageio.yaml"))


def _unsupported(what: str) -> CardiosegError:
    return CardiosegError(f"unsupported bioimage.io package: {what}")


def _elementwise(op: Any, where: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Return a per-pixel function for one processing step (None for dtype steps)."""
    kind = op.id
    kw: Any = getattr(op, "kwargs", None)  # None for steps without arguments (sigmoid)
    if kind == "ensure_dtype":
        return None
    if kind == "clip":
        return lambda t: torch.clamp(t, kw.min, kw.max)
    if kind == "sigmoid":
        return torch.sigmoid
    if kind == "softmax":
        return lambda t: torch.softmax(t, dim=1)
    if kind == "binarize":
        return lambda t: (t > float(np.max(kw.threshold))).float()
    if kind == "scale_linear":
        gain, offset = np.ravel(kw.gain), np.ravel(kw.offset)
        if gain.size > 1 or offset.size > 1:
            if where == "preprocessing":
                raise _unsupported("per-channel scale_linear on a single-channel input")
            gain_t = torch.tensor(gain, dtype=torch.float32)
            off_t = torch.tensor(offset, dtype=torch.float32)
            return lambda t: t * _per_channel(gain_t, t) + _per_channel(off_t, t)
        return lambda t: t * float(gain[0]) + float(offset[0])
    if kind == "fixed_zero_mean_unit_variance" and np.size(getattr(kw, "mean", 0.0)) == 1:
        return lambda t: (t - float(np.ravel(kw.mean)[0])) / (float(np.ravel(kw.std)[0]) + 1e-6)
    raise _unsupported(f"{where} step {kind!r}")


def _per_channel(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return values.view(1, -1, *([1] * (t.ndim - 2))).to(t.device)


def _normalisation(ops: Sequence[Any]) -> tuple[dict, list[Callable]]:
    """Return the card's normalisation (first statistics step) and the element-wise steps after it."""
    norm = {"method": "fixed", "min": 0.0, "max": 1.0}  # identity
    after: list[Callable] = []
    for op in ops:
        if op.id in ("scale_range", "zero_mean_unit_variance"):
            if after:
                raise _unsupported(f"preprocessing {op.id!r} after an element-wise step")
            if getattr(op.kwargs, "reference_tensor", None) not in (None, "input"):
                raise _unsupported(f"preprocessing {op.id!r} with a reference tensor")
            if op.id == "scale_range":
                norm = {"method": "percentile", "low": float(op.kwargs.min_percentile),
                        "high": float(op.kwargs.max_percentile)}
            else:
                norm = {"method": "zscore"}
            continue
        fn = _elementwise(op, "preprocessing")
        if fn is not None:
            after.append(fn)
    return norm, after


def _size_rule(size: Any, axis: str) -> tuple[int, int]:
    """(min, step) of an input axis; step 0 for a fixed size."""
    if isinstance(size, int):
        return size, 0
    if hasattr(size, "min") and hasattr(size, "step"):
        return int(size.min), int(size.step)
    raise _unsupported(f"input axis {axis!r} has a size given by another tensor")


def _valid_size(need: int, rule: tuple[int, int], axis: str) -> int:
    low, step = rule
    if step == 0:
        if need > low:
            raise CardiosegError(f"this bioimage.io model takes {low} px along {axis} (with its halo); "
                                 f"use a smaller tile, e.g. --tile {low}")
        return low
    return low + max(0, math.ceil((need - low) / step)) * step


class _Runner:
    """Calls the weights on a float32 array in the package's own axis order."""

    def __init__(self, descr: Any, weight_format: str) -> None:
        weights = getattr(descr.weights, weight_format)
        payload = weights.get_reader().read()
        self.format = weight_format
        if weight_format == "onnx":
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise CardiosegError("onnx weights need onnxruntime: pip install onnxruntime") from exc
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name
        else:
            import io

            self.module = torch.jit.load(io.BytesIO(payload), map_location="cpu").eval()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.format == "onnx":
            out = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})[0]
            return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)
        with torch.no_grad():
            return self.module(x.cpu()).float().to(x.device)


class BioimageioNet(nn.Module):
    """A bioimage.io package as a module: ``(N, 1, *tile)`` normalised tiles to class log-probabilities.

    ``predict_generator`` applies a softmax to the output, which recovers the probabilities.
    """

    def __init__(self, runner: _Runner, in_perm: dict, out_perm: dict, rules: list[tuple[int, int]],
                 halo: list[int], pre: list[Callable], post: list[Callable], output_kind: str,
                 spatial: Sequence[str]) -> None:
        super().__init__()
        self.runner, self.in_perm, self.out_perm = runner, in_perm, out_perm
        self.rules, self.halo, self.pre, self.post = rules, halo, pre, post
        self.output_kind, self.spatial = output_kind, spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad by the halo and to a valid size, run, crop, post-process; log-probabilities."""
        for fn in self.pre:
            x = fn(x)
        sizes = list(x.shape[2:])
        pads = []
        for n, rule, h, axis in zip(sizes, self.rules, self.halo, self.spatial, strict=True):
            total = _valid_size(n + 2 * h, rule, axis) - n
            pads.append((h, total - h))
        padding = [p for before_after in reversed(pads) for p in before_after]
        mode = "reflect" if all(max(p) < n for p, n in zip(pads, sizes, strict=True)) else "replicate"
        if any(padding):
            x = F.pad(x, padding, mode=mode)
        y = self._run(x)
        crop = (slice(None), slice(None), *(slice(b, b + n) for (b, _), n in
                                            zip(pads, sizes, strict=True)))
        y = y[crop]
        for fn in self.post:
            y = fn(y)
        if self.output_kind == "logits1":
            y = torch.cat([torch.zeros_like(y), y], dim=1)  # softmax([0, z]) = [1-σ(z), σ(z)]
        elif self.output_kind == "logits":
            pass
        elif self.output_kind == "prob1":
            p = y.clamp(0.0, 1.0)
            y = torch.log(torch.cat([1.0 - p, p], dim=1).clamp_min(1e-7))
        else:
            y = torch.log(y.clamp_min(1e-7))
        return y

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """Reorder ``(N, C, *space)`` to the package's axes and back."""
        if "batch" in self.in_perm["drop"]:  # no batch axis: one sample at a time
            return torch.cat([self._run_one(x[i : i + 1]) for i in range(x.shape[0])])
        return self._run_one(x)

    def _run_one(self, x: torch.Tensor) -> torch.Tensor:
        order, drop = self.in_perm["order"], self.in_perm["drop"]
        named = ["batch", "channel", *self.spatial]
        t = x
        for axis in sorted((named.index(a) for a in drop), reverse=True):
            t = t.squeeze(axis)
        kept = [a for a in named if a not in drop]
        t = t.permute(*[kept.index(a) for a in order]).contiguous()
        y = self.runner(t)
        out_order, out_drop = self.out_perm["order"], self.out_perm["drop"]
        kept_out = [a for a in named if a not in out_drop]
        y = y.permute(*[out_order.index(a) for a in kept_out])
        for axis in sorted(named.index(a) for a in out_drop):
            y = y.unsqueeze(axis)
        return y


def _axes(tensor: Any, where: str) -> tuple[list[str], dict[str, Any]]:
    ids, by_id = [], {}
    for axis in tensor.axes:
        kind = axis.type
        if kind not in ("batch", "channel", "space"):
            raise _unsupported(f"{where} axis {str(axis.id)!r} of type {kind!r}")
        name = kind if kind in ("batch", "channel") else str(axis.id)
        ids.append(name)
        by_id[name] = axis
    return ids, by_id


def _output_kind(test_output: np.ndarray, channel_axis: int | None) -> str:
    """``prob``/``prob1`` (probabilities) or ``logits``/``logits1``, judged from the test output."""
    values = np.asarray(test_output, dtype=np.float64)
    channels = 1 if channel_axis is None else values.shape[channel_axis]
    in_unit = values.min() >= -1e-4 and values.max() <= 1 + 1e-4
    if channels == 1:
        return "prob1" if in_unit else "logits1"
    sums = values.sum(axis=channel_axis)
    if in_unit and np.allclose(sums, 1.0, atol=1e-2):
        return "prob"
    if in_unit:
        raise _unsupported(f"{channels} output channels in [0, 1] that do not sum to one "
                           "(multi-label or instance output, not semantic segmentation)")
    return "logits"


def load_bioimageio(path: str | os.PathLike, weight_format: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Load a bioimage.io package as ``(module, card)`` for :func:`predict.predict_generator`.

    Parameters
    ----------
    path : path-like
        ``.zip`` package, ``rdf.yaml`` or the folder holding it (local; nothing is downloaded
        except what the package itself links to).
    weight_format : str, optional
        ``onnx`` or ``torchscript``; default: onnx when onnxruntime is installed, else torchscript.
    device : str or torch.device
        Where outputs are placed (the weights run on the CPU).

    Raises
    ------
    CardiosegError
        bioimageio.spec missing, an invalid package, or an unsupported part (named).
    """
    register()
    try:
        from bioimageio.spec import InvalidDescr, load_model_description
    except ImportError as exc:
        raise CardiosegError("bioimage.io packages need the optional extra: "
                             "pip install 'napari-cardioseg[bioimageio]'") from exc
    import warnings

    p = Path(path)
    if p.is_dir():
        p = next(iter([*p.glob("rdf.yaml"), *p.glob("*bioimageio.yaml")]), p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            descr = load_model_description(p, format_version="latest")
    except (ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CardiosegError(f"{path}: not a valid bioimage.io model ({first})") from exc
    if isinstance(descr, InvalidDescr):
        raise CardiosegError(f"{path}: not a valid bioimage.io model")
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise _unsupported(f"{len(descr.inputs)} inputs and {len(descr.outputs)} outputs "
                           "(one of each is supported)")
    inp, out = descr.inputs[0], descr.outputs[0]
    in_ids, in_axes = _axes(inp, "input")
    out_ids, out_axes = _axes(out, "output")
    spatial = [a for a in ("z", "y", "x") if a in in_axes]
    if len(spatial) not in (2, 3) or len(spatial) != len(in_ids) - sum(
            a in in_axes for a in ("batch", "channel")):
        raise _unsupported(f"input axes {in_ids} (need y, x or z, y, x, plus batch/channel)")
    if "channel" in in_axes and len(in_axes["channel"].channel_names) != 1:
        raise _unsupported(f"{len(in_axes['channel'].channel_names)} input channels (only 1)")
    if sorted(a for a in out_ids if a not in ("batch", "channel")) != sorted(spatial):
        raise _unsupported(f"output axes {out_ids} do not match input axes {in_ids}")
    halo = []
    for axis in spatial:
        size = out_axes[axis].size
        if not (hasattr(size, "axis_id") and str(size.axis_id) == axis and not size.offset
                and float(out_axes[axis].scale) == float(in_axes[axis].scale)):
            raise _unsupported(f"output axis {axis!r} is not the size of the input's")
        halo.append(int(getattr(out_axes[axis], "halo", 0) or 0))
    rules = [_size_rule(in_axes[a].size, a) for a in spatial]
    steps = [step for _, step in rules if step]
    multiple = math.lcm(*steps) if steps else 1

    formats = [f for f in ("onnx", "torchscript") if getattr(descr.weights, f, None) is not None]
    if weight_format is None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            formats = [f for f in formats if f != "onnx"]
        if not formats:
            present = [f for f in ("pytorch_state_dict", "onnx", "torchscript", "keras_hdf5",
                                   "tensorflow_saved_model_bundle")
                       if getattr(descr.weights, f, None) is not None]
            raise _unsupported(f"weights {present}; napari-cardioseg runs onnx (with onnxruntime) "
                               "or torchscript weights")
        weight_format = formats[0]
    elif weight_format not in formats:
        raise _unsupported(f"no {weight_format!r} weights in the package (it has {formats})")

    norm, pre = _normalisation(inp.preprocessing)
    post = []
    for op in out.postprocessing:
        fn = _elementwise(op, "postprocessing")
        if fn is not None:
            post.append(fn)
    if out.test_tensor is None:
        raise _unsupported("no test output (needed to tell probabilities from logits)")
    test_out = np.load(out.test_tensor.get_reader())
    kind = _output_kind(test_out, out_ids.index("channel") if "channel" in out_ids else None)
    channels = len(out_axes["channel"].channel_names) if "channel" in out_axes else 1
    names = [str(n) for n in out_axes["channel"].channel_names] if "channel" in out_axes else []
    if channels == 1:
        class_names = ["background", names[0] if names else "foreground"]
    else:
        class_names = ["background", *names[1:]]
    pixel_size = None
    units = [in_axes[a].unit for a in spatial]
    if all(u in _UNIT_UM for u in units):
        pixel_size = [float(in_axes[a].scale) * _UNIT_UM[u] for a, u in zip(spatial, units, strict=True)]
    ndim = len(spatial)
    card = ModelCard(
        name=str(descr.name), spec={"arch": ARCHS[ndim], "in_channels": 1,
                                    "classes": len(class_names), "multiple": multiple},
        class_names=class_names, normalization=norm, pixel_size=pixel_size,
        description=str(descr.description), license=str(descr.license or ""),
        training={"source": f"bioimage.io package {p}", "weights": weight_format,
                  "id": str(descr.id or "")},
        receptive_field=_our_receptive_field(descr, ndim) or [2 * h + 1 for h in halo],
    )
    drop_in = [a for a in ("batch", "channel") if a not in in_axes]
    drop_out = [a for a in ("batch", "channel") if a not in out_axes]
    net = BioimageioNet(_Runner(descr, weight_format), {"order": in_ids, "drop": drop_in},
                        {"order": out_ids, "drop": drop_out}, rules, halo, pre, post, kind, spatial)
    return net.to(device), card


def _our_receptive_field(descr: Any, ndim: int) -> list[int] | None:
    """Return the receptive field a package exported by this plugin keeps in its config, or None.

    Other packages tell only their output halo; with it tiles overlap by what every output pixel
    depends on, so the prediction does not depend on the tile size.
    """
    config = getattr(descr, "config", None)
    if config is not None and hasattr(config, "model_dump"):
        config = config.model_dump()
    if not isinstance(config, dict):
        return None
    ours = config.get("napari-cardioseg")
    field = ours.get("card", {}).get("receptive_field") if isinstance(ours, dict) else None
    if (isinstance(field, list) and len(field) == ndim
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in field)):
        return field
    return None


__all__ = ["ARCHS", "REGISTRY", "BioimageioNet", "is_bioimageio", "load_bioimageio", "register"]
