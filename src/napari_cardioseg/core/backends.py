"""Inference back ends for CPU prediction: eager PyTorch, TorchScript or ONNX Runtime.

:func:`make_runner` turns a model into one function mapping a batch of normalised tiles
``(B, *tile)`` float32 to softmax probabilities ``(B, C, *tile)``, so the sliding window does not
care which engine runs the net. ``benchmarks/bench_backends.py`` measures them (and the options
that lost) on the shipped models.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable

import numpy as np
import torch

from .errors import CardiosegError
from .models import ModelCard
from .nets import size_multiple, spec_ndim

BACKENDS = ("auto", "eager", "torchscript", "onnx")
Runner = Callable[[np.ndarray], np.ndarray]


def _softmax_np(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _example(card: ModelCard) -> torch.Tensor:
    edge = 4 * size_multiple(card.spec)
    return torch.zeros((1, 1) + (edge,) * spec_ndim(card.spec))


def eager_runner(model: torch.nn.Module, card: ModelCard) -> Runner:
    """Plain PyTorch in float32, channels-last (what :mod:`predict` does on the CPU)."""
    ndim = spec_ndim(card.spec)
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    model = model.eval().to(memory_format=fmt)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch[:, None])).to(memory_format=fmt)
            return torch.softmax(model(x).float(), dim=1).numpy()
    return run


def torchscript_runner(model: torch.nn.Module, card: ModelCard) -> Runner:
    """Run the model traced and frozen with TorchScript (``torch.jit.trace`` + ``freeze``)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.freeze(torch.jit.trace(model.eval(), _example(card), check_trace=False))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch[:, None]))
            return torch.softmax(traced(x).float(), dim=1).numpy()
    return run


def onnx_runner(model: torch.nn.Module, card: ModelCard, threads: int | None = None) -> Runner:
    """Run the model exported to ONNX (in memory) with ONNX Runtime in float32."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise CardiosegError("the onnx back end needs onnxruntime: pip install onnxruntime") from exc
    spatial = {i + 2: f"s{i}" for i in range(spec_ndim(card.spec))}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # the TorchScript-based exporter (dynamo=False) writes to a file object; torch annotates
        # ``f`` with paths only
        torch.onnx.export(model.eval(), (_example(card),), buffer,  # type: ignore[arg-type]
                          dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch", **spatial},
                                        "logits": {0: "batch", **spatial}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch[:, None], dtype=np.float32)
        return _softmax_np(session.run(None, {"input": x})[0])
    return run


def make_runner(model: torch.nn.Module, card: ModelCard, backend: str = "auto") -> Runner:
    """Return a function ``(B, *tile)`` normalised float32 → ``(B, C, *tile)`` probabilities.

    ``auto`` picks ONNX Runtime when it is installed (``CARDIOSEG_BACKEND`` overrides), else eager.
    The model must be on the CPU; GPU prediction keeps the eager path.
    """
    if backend not in BACKENDS:
        raise CardiosegError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get("CARDIOSEG_BACKEND", "")
        if backend not in BACKENDS[1:]:
            try:
                import onnxruntime  # noqa: F401
                backend = "onnx"
            except ImportError:
                backend = "eager"
    model = model.to("cpu")
    if backend == "onnx":
        return onnx_runner(model, card)
    if backend == "torchscript":
        return torchscript_runner(model, card)
    return eager_runner(model, card)


__all__ = ["BACKENDS", "eager_runner", "make_runner", "onnx_runner", "torchscript_runner"]
