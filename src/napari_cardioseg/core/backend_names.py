"""The CPU inference back ends, one row each (torch-free, so the CLI lists them without torch)."""

from __future__ import annotations

#: name → what it runs; :mod:`.backends` builds them
BACKENDS: dict[str, str] = {
    "auto": "int8 for the shipped models, else onnx; eager without onnxruntime (the default)",
    "eager": "PyTorch float32, channels-last",
    "torchscript": "PyTorch traced and frozen with TorchScript",
    "onnx": "ONNX Runtime float32",
    "int8": "ONNX Runtime, statically quantised to int8 (models with calibration images only)",
}
