"""Save docs/images/viewer.png: the EM sample, its mito-em prediction, and the Measure widget's results.

Run under a display (e.g. ``xvfb-run -a .venv/bin/python scripts/screenshot.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.modules.setdefault("triton", None)

import napari  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402, F401  (before OpenGL is up)
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_cardioseg.cli.demo import WIDGETS  # noqa: E402
from napari_cardioseg.core.models import load_model  # noqa: E402
from napari_cardioseg.core.predict import predict_probabilities, probabilities_to_labels  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "viewer.png"


def main() -> None:
    """Open the viewer, predict, measure, save a screenshot."""
    viewer = napari.Viewer(title="napari-cardioseg")
    viewer.window._qt_window.resize(1700, 1000)
    image = viewer.open_sample("napari-cardioseg", "em")[0]
    model, card = load_model("mito-em")
    labels = probabilities_to_labels(predict_probabilities(np.asarray(image.data), model, card))
    viewer.add_labels(labels, name="mito-em prediction", scale=image.scale, opacity=0.45)
    widgets = {}
    for name in WIDGETS:
        widgets[name] = viewer.window.add_plugin_dock_widget("napari-cardioseg", name, tabify=True)[1]
    measure = widgets["Measure"]
    measure._labels_layer.value = viewer.layers["mito-em prediction"]
    measure.measure()
    while measure.worker.is_running:
        QApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.dims.set_point(0, float(np.mean(viewer.dims.range[0][:2])))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    viewer.close()
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
