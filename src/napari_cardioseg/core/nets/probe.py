"""Receptive fields measured from gradients (imports torch; see :func:`nets.receptive_field`)."""

from __future__ import annotations

import json

import torch
from torch import nn

from . import PROBE_MAX, architecture, build_model, size_multiple


def measure(key: str) -> tuple[int, ...]:
    """Receptive field of the spec serialised in ``key`` (JSON), per axis."""
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
