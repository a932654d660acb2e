"""Static int8 quantisation of a model's ONNX graph for ONNX Runtime (the ``int8`` back end).

Weights become int8 per output channel and activations uint8, with the activation ranges
measured (minimum / maximum) on a fixed set of calibration images of the model's own kind:
one :data:`CALIBRATION` row per model name. Only models with a row can be quantised, because
ranges measured on the wrong kind of image clip the activations of the right kind; the rows are
the shipped models, whose int8 graphs were checked against eager float32 on real held-out data
(``benchmarks/bench_backends.py``). The result is deterministic: same weights, same graph.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .errors import CardiosegError
from .models import ModelCard
from .nets import size_multiple
from .normalize import apply_normalization, fit_normalization

#: bump when the quantisation settings or a calibration set change (it is part of the cache key)
VERSION = 1


def _em_slices() -> list[np.ndarray]:
    from .._sample_data import em_sample

    return list(np.asarray(em_sample()[0][0])[::4])  # 8 of the 32 slices, 256²


def _zdisk_images() -> list[np.ndarray]:
    from .._sample_data import zdisk_sample

    return [np.asarray(zdisk_sample()[0][0])]  # 512², 0.1 µm per pixel


#: model name → raw 2D calibration images (normalised with the model's card before use)
CALIBRATION: dict[str, Callable[[], list[np.ndarray]]] = {
    "mito-em": _em_slices,
    "zdisk-fluo": _zdisk_images,
}


def int8_available(card: ModelCard) -> bool:
    """Tell whether ``card``'s model can be quantised: fixed weights and a calibration row."""
    return bool(card.weights_sha256) and card.name in CALIBRATION


def calibration_tiles(card: ModelCard) -> list[np.ndarray]:
    """Return the calibration inputs ``(1, 1, H, W)`` float32, normalised as prediction does."""
    if card.name not in CALIBRATION:
        raise CardiosegError(
            f"the int8 back end has no calibration images for model {card.name!r}; it is available "
            f"for {', '.join(CALIBRATION)} (use --backend onnx for float32 ONNX Runtime)")
    multiple = size_multiple(card.spec)
    tiles = []
    for image in CALIBRATION[card.name]():
        norm = apply_normalization(image, fit_normalization(image, card.normalization))
        h, w = (n // multiple * multiple for n in norm.shape)
        tiles.append(np.ascontiguousarray(norm[None, None, :h, :w], dtype=np.float32))
    return tiles


def quantize_onnx(graph: bytes, card: ModelCard) -> bytes:
    """Return ``graph`` (float32 ONNX, input ``input``) quantised to int8 (QDQ) for ``card``."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise CardiosegError("the int8 back end needs onnxruntime: pip install onnxruntime") from exc
    tiles = calibration_tiles(card)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feed: Iterator[np.ndarray] = iter(tiles)

        def get_next(self) -> dict[str, np.ndarray] | None:
            tile = next(self.feed, None)
            return None if tile is None else {"input": tile}

    with tempfile.TemporaryDirectory(prefix="cardioseg-int8-") as tmp:
        source, target = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(graph)
        quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        return target.read_bytes()


__all__ = ["CALIBRATION", "VERSION", "calibration_tiles", "int8_available", "quantize_onnx"]
