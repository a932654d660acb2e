"""Largest event-loop gaps of the Predict and Train widgets in a real napari viewer.

Not a test. A 10 ms QTimer ticks on the GUI thread while a widget works; the largest interval
between ticks is the longest the viewer froze. Runs on the plugin's sample data with the shipped
models: Predict (``zdisk-fluo`` on the 1024×1024 Z-disk sample, twice: the first run per model
and process also builds the ONNX Runtime session) and Train (``mito-em`` fine-tuned on the EM
sample's ground truth used as strokes on every 8th row, for ``--train-seconds``). ``--think`` waits
that long after opening the Predict widget before the first Run, as a user choosing the image and the
model would (the widget imports the heavy modules in the background meanwhile). Needs a display
(``xvfb-run -a python benchmarks/bench_gui_gaps.py``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np


def _gaps_while(app: object, start: Callable[[], None],
                busy: Callable[[], bool]) -> tuple[float, float, float]:
    """Run ``start``, process events until ``busy`` is false; (click, largest gap, its end) in s."""
    from qtpy.QtCore import QTimer

    ticks = [time.perf_counter()]
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    t0 = time.perf_counter()
    start()
    click = time.perf_counter() - t0
    while busy():
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.002)
    for _ in range(20):
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.005)
    timer.stop()
    gaps = np.diff(ticks)
    worst = int(gaps.argmax())
    return click, float(gaps[worst]), ticks[worst + 1] - t0


def main() -> None:
    """Print the click time and the largest gap of each run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=20.0)
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds between opening the Predict widget and the first Run, as a "
                        "user choosing the image and model (the widget warms imports meanwhile)")
    args = parser.parse_args()
    os.environ.setdefault("CARDIOSEG_HOME", tempfile.mkdtemp())  # a fresh ONNX cache
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_cardioseg._sample_data import em_sample, zdisk_sample
    from napari_cardioseg.widgets.predict import PredictWidget
    from napari_cardioseg.widgets.train import TrainWidget

    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    data, meta, _ = zdisk_sample()[0]
    image = viewer.add_image(data, **meta)
    predict = PredictWidget(viewer)
    viewer.window.add_dock_widget(predict)
    predict._image.value = image
    predict._model.value = next(c for c in predict._model.choices if "zdisk-fluo" in str(c))
    opened = time.perf_counter()
    _gaps_while(app, lambda: None, lambda: time.perf_counter() - opened < args.think)
    for run in ("first", "second"):
        click, gap, at = _gaps_while(app, predict.run, lambda: predict.worker is not None)
        print(f"Predict zdisk-fluo {data.shape} ({run} run): click {click * 1000:.0f} ms, "
              f"largest gap {gap * 1000:.0f} ms (ending {at:.2f} s after the click)")
    em, em_meta, _ = em_sample()[0]
    truth = em_sample()[1][0]
    em_layer = viewer.add_image(em, **em_meta)
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train)
    train._image.value = em_layer
    scribbles = train.new_scribbles()
    assert scribbles is not None
    strokes = np.zeros(em.shape, np.uint8)
    strokes[..., ::8, :] = (truth[..., ::8, :] > 0) + 1
    scribbles.data = strokes
    train._budget.value = args.train_seconds
    click, gap, at = _gaps_while(app, train.train, lambda: train.worker is not None)
    print(f"Train mito-em on EM sample {em.shape}, {args.train_seconds:g} s: click {click * 1000:.0f} ms, "
          f"largest gap {gap * 1000:.0f} ms (ending {at:.2f} s after the click)")
    viewer.close()


if __name__ == "__main__":
    main()
