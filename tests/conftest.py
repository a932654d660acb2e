"""Shared fixtures. torch is imported before any viewer exists (Mesa/LLVM clash, see notes)."""

from __future__ import annotations

import os
import sys
import tempfile

sys.modules.setdefault("triton", None)  # keep triton (and its LLVM) out of the process
# exported ONNX files of the CPU back end go to a throwaway folder, not the user's cache
os.environ.setdefault("CARDIOSEG_CACHE_DIR", tempfile.mkdtemp(prefix="cardioseg-test-cache-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each phase's report on the item; napari's ``make_napari_viewer`` reads ``rep_call``."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    """A real napari viewer; workers are awaited at teardown so none outlives the test."""
    from napari.qt.threading import WorkerBase

    v = make_napari_viewer()
    yield v
    WorkerBase.await_workers(msecs=30000)
    qtbot.wait(50)
