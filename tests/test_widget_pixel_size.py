"""The Pixel size widget in a real viewer: sets scales and the calibration flag, refuses bad lengths."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cardioseg.core.units import CALIBRATED_KEY
from napari_cardioseg.widgets import _common, pixel_size
from napari_cardioseg.widgets.pixel_size import PixelSizeWidget


@pytest.fixture
def messages(monkeypatch):
    shown = {"error": [], "info": []}
    monkeypatch.setattr(_common, "show_error", shown["error"].append)
    monkeypatch.setattr(pixel_size, "show_info", shown["info"].append)
    return shown


def test_stack_and_same_shape_layers_get_the_pixel_size(viewer, messages):
    stack = viewer.add_image(np.zeros((4, 16, 20), np.uint16), name="em", translate=(0, 5, 5))
    labels = viewer.add_labels(np.zeros((4, 16, 20), np.int32), name="em labels")
    other = viewer.add_image(np.zeros((4, 16, 21), np.uint16), name="other")
    timeseries = viewer.add_image(np.zeros((2, 4, 16, 20), np.uint8), name="t")
    widget = PixelSizeWidget(viewer)
    widget._layer.value = stack
    assert widget._status.value.startswith("not calibrated")
    assert widget._xy.value == "1.0" and widget._z.value == "1.0"

    widget._xy.value, widget._z.value = "0,008", "0.02"  # decimal comma and point
    widget._set.native.click()
    assert messages["error"] == []
    np.testing.assert_allclose(stack.scale, (0.02, 0.008, 0.008))
    np.testing.assert_allclose(stack.translate, (0, 5, 5))
    np.testing.assert_allclose(labels.scale, (0.02, 0.008, 0.008))
    np.testing.assert_allclose(timeseries.scale, (1.0, 0.02, 0.008, 0.008))  # time axis untouched
    np.testing.assert_allclose(other.scale, (1, 1, 1))  # another shape: not touched
    assert stack.metadata[CALIBRATED_KEY] and labels.metadata[CALIBRATED_KEY]
    assert CALIBRATED_KEY not in other.metadata
    assert widget._status.value == "calibrated: Z 0.02, Y 0.008, X 0.008 µm"
    assert messages["info"] == [
        "pixel size of 'em' and 2 layer(s) of the same shape: Z 0.02, Y 0.008, X 0.008 µm"]


def test_a_projection_does_not_give_its_stack_a_z_step(viewer, messages):
    # a 2D projection beside its stack: the stack's last two axes match, but its Z step is unknown
    stack = viewer.add_image(np.zeros((4, 16, 20), np.uint16), name="em",
                             metadata={CALIBRATED_KEY: False})
    mip = viewer.add_image(np.zeros((16, 20), np.uint16), name="mip",
                           metadata={CALIBRATED_KEY: False})
    widget = PixelSizeWidget(viewer)
    widget._layer.value = mip
    widget._xy.value = "0.1"
    widget._set.native.click()
    np.testing.assert_allclose(mip.scale, (0.1, 0.1))
    np.testing.assert_allclose(stack.scale, (1, 1, 1))
    assert stack.metadata[CALIBRATED_KEY] is False
    assert messages["info"] == ["pixel size of 'mip': Y 0.1, X 0.1 µm"]


def test_a_multiscale_layer_can_be_calibrated(viewer, messages):
    # an uncalibrated OME-Zarr opens as a multiscale layer: the widget must offer it
    data = np.zeros((4, 64, 64), np.uint8)
    layer = viewer.add_image([data, data[:, ::2, ::2]], name="zarr", multiscale=True,
                             metadata={CALIBRATED_KEY: False})
    widget = PixelSizeWidget(viewer)
    assert layer in widget._layer.choices
    widget._layer.value = layer
    widget._xy.value, widget._z.value = "0.01", "0.02"
    widget._set.native.click()
    np.testing.assert_allclose(layer.scale, (0.02, 0.01, 0.01))
    assert layer.metadata[CALIBRATED_KEY] is True


def test_unticked_sets_only_the_layer_and_2d_hides_z(viewer, messages):
    image = viewer.add_image(np.zeros((30, 40), np.float32), name="cell", metadata={CALIBRATED_KEY: False})
    mask = viewer.add_labels(np.zeros((30, 40), np.uint8), name="mask")
    widget = PixelSizeWidget(viewer)
    widget._layer.value = image
    assert widget._z.native.isHidden() and not widget._xy.native.isHidden()
    widget._same_shape.value = False
    widget._xy.value = "0.1 µm"
    widget._set.native.click()
    np.testing.assert_allclose(image.scale, (0.1, 0.1))
    np.testing.assert_allclose(mask.scale, (1, 1))
    assert image.metadata[CALIBRATED_KEY] is True and CALIBRATED_KEY not in mask.metadata
    widget._layer.value = mask
    assert widget._status.value.startswith("not calibrated") and widget._xy.value == "1.0"


def test_a_one_micrometre_pixel_counts_as_calibrated(viewer, messages):
    image = viewer.add_image(np.zeros((8, 8)), name="a")
    widget = PixelSizeWidget(viewer)
    widget._layer.value = image
    widget._set.native.click()  # the field shows 1.0: a real 1 µm pixel once it is confirmed
    assert image.metadata[CALIBRATED_KEY] is True and widget._status.value == "calibrated: Y 1, X 1 µm"


@pytest.mark.parametrize("xy,z,message", [
    ("0", "0.1", "pixel size must be a positive, finite length, got '0'"),
    ("-0,1", "0.1", "pixel size must be a positive, finite length, got '-0,1'"),
    ("nan", "0.1", "pixel size: 'nan' is not a length"),
    ("0.1", "inf", "Z step: 'inf' is not a length"),
    ("0.1", "", "Z step: '' is not a length"),
    ("0.1", "1e999", "Z step must be a positive, finite length"),
])
def test_bad_lengths_are_refused_and_change_nothing(viewer, messages, xy, z, message):
    stack = viewer.add_image(np.zeros((3, 8, 8)), name="s", scale=(0.5, 0.2, 0.2))
    widget = PixelSizeWidget(viewer)
    widget._layer.value = stack
    assert widget._status.value == "calibrated: Z 0.5, Y 0.2, X 0.2 µm"  # no flag, but a scale was set
    widget._xy.value, widget._z.value = xy, z
    widget._set.native.click()
    assert len(messages["error"]) == 1 and messages["error"][0].startswith(message)
    assert messages["info"] == []
    np.testing.assert_allclose(stack.scale, (0.5, 0.2, 0.2))
    assert CALIBRATED_KEY not in stack.metadata


def test_choices_follow_the_viewer(viewer, messages):
    widget = PixelSizeWidget(viewer)
    assert widget._layer.value is None and widget._status.value == "add an image layer first"
    widget._set.native.click()
    assert messages["error"] == ["add or choose an image layer first"]
    viewer.add_points(np.zeros((2, 2)), name="pts")
    viewer.add_image(np.zeros((8, 8)), name="img")
    assert [layer.name for layer in widget._layer.choices] == ["img"]
