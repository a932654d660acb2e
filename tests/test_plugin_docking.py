"""Every widget in the manifest docks in a real viewer next to the sample data."""

from __future__ import annotations

import numpy as np
import pytest
from npe2 import PluginManifest

WIDGETS = [w.display_name for w in
           PluginManifest.from_distribution("napari-cardioseg").contributions.widgets]


@pytest.mark.parametrize("name", WIDGETS)
def test_widget_docks(viewer, name):
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cardioseg", name)
    assert widget is not None and dock.isVisible() is not None


def test_samples_open_with_calibration(viewer):
    layers = viewer.open_sample("napari-cardioseg", "em")
    image = next(layer for layer in layers if layer._type_string == "image")
    assert image.ndim == 3
    assert np.all(np.asarray(image.scale) < 1.0)  # µm per voxel, not the default 1
    layers = viewer.open_sample("napari-cardioseg", "zdisk")
    assert any(layer._type_string == "labels" for layer in layers)
