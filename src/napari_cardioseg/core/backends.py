"""Inference back ends for CPU prediction: eager PyTorch, TorchScript, ONNX Runtime (float32, int8).

:func:`make_runner` turns a model into one function mapping a batch of normalised tiles
``(B, *tile)`` float32 to softmax probabilities ``(B, C, *tile)``, so the sliding window does not
care which engine runs the net. ``benchmarks/bench_backends.py`` measures them (and the options
that lost) on the shipped models.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backend_names import BACKENDS
from .errors import CardiosegError
from .models import ModelCard
from .nets import size_multiple, spec_ndim
from .writes import atomic_path

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


#: exported ONNX graphs of this process, by :func:`_onnx_key`
_ONNX_CACHE: dict[str, bytes] = {}
#: running :func:`cache_onnx_in_background` processes, by model
_EXPORTS: dict[str, subprocess.Popen] = {}
#: ONNX Runtime sessions of this process, by ``(graph key, threads)``: a folder of small images
#: would otherwise build one per file (about 25 ms each); the last :data:`SESSIONS_KEPT` stay
_SESSIONS: dict[tuple[str, int], Any] = {}
SESSIONS_KEPT = 2


def onnx_cache_dir() -> Path:
    """Return the folder where exported ONNX graphs are kept between runs (subfolder ``onnx``).

    ``$CARDIOSEG_CACHE_DIR`` when set, else ``$CARDIOSEG_HOME/cache``, else
    ``$XDG_CACHE_HOME/cardioseg`` (``~/.cache/cardioseg``).
    """
    base = os.environ.get("CARDIOSEG_CACHE_DIR")
    if not base and os.environ.get("CARDIOSEG_HOME"):
        base = str(Path(os.environ["CARDIOSEG_HOME"]) / "cache")
    if not base:
        base = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cardioseg")
    return Path(base).expanduser() / "onnx"


def _onnx_key(card: ModelCard) -> str | None:
    """Return a cache key for the card's weights, or None when they are not fixed (no sha256)."""
    if not card.weights_sha256:
        return None
    tag = f"{card.weights_sha256}:{sorted(card.spec.items())}:{torch.__version__}"
    return hashlib.sha256(tag.encode()).hexdigest()


def _export_onnx(model: torch.nn.Module, card: ModelCard) -> bytes:
    """Export the model as an ONNX graph (opset 17) with dynamic batch and spatial axes."""
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
    return buffer.getvalue()


def _cached_graph(key: str | None, make: Callable[[], bytes]) -> bytes:
    """Return ``make()``, cached under ``key`` in memory and on disk (``key`` None: not cached).

    The disk copy is written atomically to :func:`onnx_cache_dir`; an unreadable or unwritable
    cache folder only costs the rebuild.
    """
    if key is None:
        return make()
    if key in _ONNX_CACHE:
        return _ONNX_CACHE[key]
    path = onnx_cache_dir() / f"{key}.onnx"
    try:
        payload = path.read_bytes()
    except OSError:
        payload = make()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(payload)
        except (OSError, CardiosegError):
            pass
    _ONNX_CACHE[key] = payload
    return payload


def _is_cached(key: str | None) -> bool:
    return key is not None and (key in _ONNX_CACHE or (onnx_cache_dir() / f"{key}.onnx").is_file())


def _int8_key(card: ModelCard) -> str | None:
    from .quantize import VERSION

    key = _onnx_key(card)
    return None if key is None else hashlib.sha256(f"{key}:int8:v{VERSION}".encode()).hexdigest()


def onnx_bytes(model: torch.nn.Module, card: ModelCard) -> bytes:
    """Return the exported graph, cached per weights sha256 in memory and on disk.

    Models without a ``weights_sha256`` (being trained) are exported every time.
    """
    return _cached_graph(_onnx_key(card), lambda: _export_onnx(model, card))


def int8_bytes(model: torch.nn.Module, card: ModelCard) -> bytes:
    """Return the graph quantised to int8 (:mod:`.quantize`), cached like :func:`onnx_bytes`."""
    from .quantize import quantize_onnx

    return _cached_graph(_int8_key(card), lambda: quantize_onnx(onnx_bytes(model, card), card))


def onnx_cached(card: ModelCard) -> bool:
    """Tell whether the card's exported ONNX graph is in this process's or the disk cache."""
    return _is_cached(_onnx_key(card))


def auto_backend(card: ModelCard) -> str:
    """Return what ``auto`` runs for ``card`` on the CPU: ``int8``, ``onnx`` or ``eager``.

    ``CARDIOSEG_BACKEND`` overrides; else int8 where :func:`.quantize.int8_available`, float32
    ONNX Runtime otherwise, eager PyTorch without onnxruntime.
    """
    from .quantize import int8_available

    chosen = os.environ.get("CARDIOSEG_BACKEND", "")
    if chosen in BACKENDS and chosen != "auto":
        return chosen
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "eager"
    return "int8" if int8_available(card) else "onnx"


def auto_cached(card: ModelCard) -> bool:
    """Tell whether the graph ``auto`` would run for ``card`` is cached (eager needs none)."""
    backend = auto_backend(card)
    if backend == "int8":
        return _is_cached(_int8_key(card))
    return onnx_cached(card) if backend == "onnx" else True


def cache_onnx_in_background(model: str | os.PathLike) -> subprocess.Popen:
    """Export ``model`` (name or card path) into the ONNX cache in a separate Python process.

    For a GUI: torch's exporter holds the interpreter lock for about half a second at a time,
    which would freeze the viewer if it ran in one of its threads. The process runs at the lowest
    priority, so it does not starve the viewer of CPU either. One process per model at a time;
    the processes are kept (and reaped) in :data:`_EXPORTS`.
    """
    key = str(model)
    for name, process in list(_EXPORTS.items()):
        if process.poll() is not None:
            del _EXPORTS[name]
    if key not in _EXPORTS:
        code = ("import os, sys; os.nice(19) if hasattr(os, 'nice') else None; "  # yield the CPU
                "sys.modules.setdefault('triton', None); "
                "from napari_cardioseg.core.backends import _cache_main; _cache_main(sys.argv[1])")
        _EXPORTS[key] = subprocess.Popen([sys.executable, "-c", code, key],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return _EXPORTS[key]


@atexit.register
def _stop_exports() -> None:
    """At exit, stop unfinished background exports (their cache files are written atomically)."""
    for process in _EXPORTS.values():
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
    _EXPORTS.clear()


def _cache_main(model: str) -> None:
    """Entry of :func:`cache_onnx_in_background`'s process: export (and quantise) the model."""
    from .models import load_model

    net, card = load_model(model)
    if auto_backend(card) == "int8":
        int8_bytes(net, card)
    else:
        onnx_bytes(net, card)


def _session_threads(threads: int | None) -> int:
    """ONNX Runtime threads of a session: ``threads``, by default torch's."""
    return threads or torch.get_num_threads()


def onnx_runner(model: torch.nn.Module | None, card: ModelCard, threads: int | None = None,
                int8: bool = False) -> Runner:
    """Run the model exported to ONNX (see :func:`onnx_bytes`) with ONNX Runtime in float32.

    ``int8`` runs the statically quantised graph instead (:func:`int8_bytes`). Sessions of models
    with fixed weights are reused within the process (:data:`SESSIONS_KEPT`). ``model`` may be
    None only when the graph is cached (:func:`cached_runner`).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise CardiosegError("the onnx back end needs onnxruntime: pip install onnxruntime") from exc
    threads = _session_threads(threads)
    key = _int8_key(card) if int8 else _onnx_key(card)
    session = _SESSIONS.pop((key, threads), None) if key is not None else None
    if session is None:
        if model is None:
            def missing() -> bytes:
                raise CardiosegError(f"model {card.name!r}: no cached graph to run without the net")
            graph = _cached_graph(key, missing)
        else:
            graph = int8_bytes(model, card) if int8 else onnx_bytes(model, card)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    if key is not None:  # concurrent run() calls on one session are safe in ONNX Runtime
        _SESSIONS[(key, threads)] = session  # re-inserted: the most recent comes last
        while len(_SESSIONS) > SESSIONS_KEPT:
            del _SESSIONS[next(iter(_SESSIONS))]

    def run(batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch[:, None], dtype=np.float32)
        return _softmax_np(session.run(None, {"input": x})[0])
    return run


def cached_runner(card: ModelCard, backend: str) -> Runner | None:
    """Return the CPU runner of ``backend`` for ``card`` from the ONNX cache alone, else None.

    For ``auto`` (as :func:`auto_backend` resolves it), ``onnx`` and ``int8`` whose graph is
    cached, so a run can skip building the torch net (about 70 ms, most of a small image's
    fixed cost); None for the other back ends or when the graph is not cached.
    """
    backend = auto_backend(card) if check_backend(backend) == "auto" else backend
    if backend not in ("onnx", "int8"):
        return None
    key = _int8_key(card) if backend == "int8" else _onnx_key(card)
    if not (_is_cached(key) or (key, _session_threads(None)) in _SESSIONS):
        return None
    return onnx_runner(None, card, int8=backend == "int8")


def check_backend(backend: str) -> str:
    """Return ``backend`` when it is one of :data:`BACKENDS`, else raise a clear error."""
    if backend not in BACKENDS:
        raise CardiosegError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def make_runner(model: torch.nn.Module, card: ModelCard, backend: str = "auto") -> Runner:
    """Return a function ``(B, *tile)`` normalised float32 → ``(B, C, *tile)`` probabilities.

    ``auto`` is :func:`auto_backend`. The model must be on the CPU; GPU prediction keeps the
    eager path.
    """
    if check_backend(backend) == "auto":
        backend = auto_backend(card)
    model = model.to("cpu")
    if backend in ("onnx", "int8"):
        return onnx_runner(model, card, int8=backend == "int8")
    if backend == "torchscript":
        return torchscript_runner(model, card)
    return eager_runner(model, card)


def cpu_runner(model: torch.nn.Module, card: ModelCard, backend: str,
               device: torch.device) -> Runner | None:
    """Build :func:`make_runner` for a prediction run, or None where eager PyTorch runs as is.

    That is for ``backend="eager"``, a CUDA/MPS ``device``, or an imported bioimage.io model
    (which already runs its package's ONNX or TorchScript weights).
    """
    check_backend(backend)
    if backend == "eager" or device.type != "cpu" or card.spec["arch"].startswith("bioimageio"):
        return None
    return make_runner(model, card, backend)


__all__ = ["BACKENDS", "auto_backend", "auto_cached", "cache_onnx_in_background", "cached_runner",
           "check_backend", "cpu_runner", "eager_runner", "int8_bytes", "make_runner", "onnx_bytes",
           "onnx_cache_dir", "onnx_cached", "onnx_runner", "torchscript_runner"]
