"""Save docs/images/viewer.png: napari with the samples, a prediction and the plugin's widgets docked.

Run under a display (e.g. ``xvfb-run -a .venv/bin/python scripts/screenshot.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.modules.setdefault("triton", None)

import napari  # noqa: E402
import torch  # noqa: E402, F401  (before OpenGL is up)

from napari_cardioseg.cli.demo import WIDGETS  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "viewer.png"


def main() -> None:
    """Open the viewer, dock the widgets, save a screenshot."""
    viewer = napari.Viewer(title="napari-cardioseg")
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-cardioseg", "em")
    for name in WIDGETS:
        viewer.window.add_plugin_dock_widget("napari-cardioseg", name, tabify=True)
    viewer.dims.set_point(0, viewer.dims.range[0].stop / 2)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    viewer.close()
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
