"""Every widget explains its controls, and the demo's docks fit a 1280×800 window."""

from __future__ import annotations

import pytest
from magicgui.widgets import Container, Label

from napari_cardioseg.cli.demo import WIDGETS, open_demo
from napari_cardioseg.widgets.enhance import EnhanceWidget
from napari_cardioseg.widgets.evaluate import EvaluateWidget
from napari_cardioseg.widgets.measure import MeasureWidget
from napari_cardioseg.widgets.pixel_size import PixelSizeWidget
from napari_cardioseg.widgets.predict import PredictWidget
from napari_cardioseg.widgets.train import TrainWidget

JARGON = {
    TrainWidget: {"_budget": "train", "_freeze": "encoder", "_unit": "batch"},
    PredictWidget: {"_tile": "tiles", "_overlap": "tile", "_batch": "tiles"},
    MeasureWidget: {"_mode": "auto"},
}


def controls(container: Container) -> list:
    """Every magicgui control inside ``container`` (nested containers included), text labels aside."""
    found = []
    for widget in container:
        if isinstance(widget, Container):
            found += controls(widget)
        elif not isinstance(widget, Label):
            found.append(widget)
    return found


@pytest.mark.parametrize("kind", [TrainWidget, PredictWidget, EnhanceWidget, MeasureWidget,
                                  EvaluateWidget, PixelSizeWidget])
def test_every_control_has_a_plain_tooltip(viewer, kind, monkeypatch, tmp_path):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    widget = kind(viewer)
    found = controls(widget)
    assert len(found) >= 4
    missing = [w.label or getattr(w, "text", "") or type(w).__name__ for w in found
               if not (w.tooltip or "").strip()]
    assert not missing, f"{kind.__name__}: no tooltip on {missing}"
    for name, word in JARGON.get(kind, {}).items():  # the jargon is explained in words
        tip = getattr(widget, name).tooltip
        assert word in tip.lower() and len(tip) > 40, (name, tip)
    if kind is EnhanceWidget:
        assert "histogram" in widget.controls["alpha"].spin.tooltip
        assert "standard deviations" in widget.controls["n_sigma"].spin.tooltip


def test_demo_docks_are_tabs_that_fit_1280_by_800(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 800)
    docks = open_demo(viewer)
    qtbot.wait(100)
    assert len(docks) == len(WIDGETS) == 6
    for dock in docks:  # one tab group: the other five docks are its tabs
        assert len(window.tabifiedDockWidgets(dock)) == len(docks) - 1
    tallest = max(dock.minimumSizeHint().height() for dock in docks)
    print(f"tallest dock needs {tallest} px; window minimum {window.minimumSizeHint().height()} px")
    assert tallest < 800 - 100 and window.minimumSizeHint().height() <= 800
    assert window.height() <= 800


def test_importing_the_widgets_keeps_triton_out_of_the_process():
    import subprocess
    import sys

    code = ("import sys; import napari_cardioseg.widgets, torch, torchvision; "
            "print(sys.modules.get('triton', 'absent'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stderr[-2000:]
