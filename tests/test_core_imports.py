"""core/ stays free of Qt and napari: importing every core module pulls in neither."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import napari_cardioseg.core as core


def test_core_imports_no_gui():
    modules = [m.name for m in pkgutil.walk_packages(core.__path__, "napari_cardioseg.core.")]
    assert "napari_cardioseg.core.io" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'qtpy', 'napari', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
