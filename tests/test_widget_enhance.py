"""The enhance widget in a real viewer: Apply adds a new layer on top of the input, never overwrites."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cardioseg.core.contrast import (
    METHODS,
    Method,
    Param,
    agcwd,
    agcwd_extended,
    all_params,
    check_params,
    percentile_stretch,
)
from napari_cardioseg.core.units import CALIBRATED_KEY
from napari_cardioseg.widgets import _common
from napari_cardioseg.widgets.enhance import EnhanceWidget


@pytest.fixture
def stack(rng) -> np.ndarray:
    vol = rng.integers(200, 3000, (3, 24, 32)).astype(np.uint16)
    vol[2] //= 4  # a darker slice, so per-slice and whole-volume results differ
    return vol


def _apply_and_wait(widget, viewer, qtbot, n_layers):
    widget._apply.native.click()
    qtbot.waitUntil(lambda: len(viewer.layers) == n_layers, timeout=15000)
    qtbot.waitUntil(lambda: widget._apply.enabled, timeout=15000)


def test_apply_adds_layer_with_scale_translate(viewer, qtbot, stack):
    original = stack.copy()
    source = viewer.add_image(stack, name="em", scale=(0.05, 0.01, 0.01), translate=(1.0, 2.0, 3.0))
    widget = EnhanceWidget(viewer)
    widget._image.value = source
    widget._method.value = "agcwd-extended"
    widget.controls["alpha"].spin.value = 0.7
    _apply_and_wait(widget, viewer, qtbot, 2)

    out = viewer.layers["em [agcwd-extended]"]
    np.testing.assert_array_equal(out.data, agcwd_extended(stack, alpha=0.7))
    assert out.data.dtype == np.uint16
    np.testing.assert_allclose(out.scale, (0.05, 0.01, 0.01))
    np.testing.assert_allclose(out.translate, (1.0, 2.0, 3.0))
    assert tuple(out.contrast_limits) == (0.0, 65535.0)
    assert out.metadata[CALIBRATED_KEY] is True  # the source's scale is a pixel size
    assert source.data is stack
    np.testing.assert_array_equal(stack, original)  # the input layer is untouched

    before, after = (ax.patches[0].get_data() for ax in widget.figure.axes)
    assert before.values.sum() == after.values.sum() == stack.size
    assert after.edges[0] == 0 and after.edges[-1] == 65535
    assert before.edges[0] == stack.min() and before.edges[-1] == stack.max()


def test_second_apply_adds_another_layer_per_slice(viewer, qtbot, stack):
    source = viewer.add_image(stack, name="em")
    widget = EnhanceWidget(viewer)
    widget._image.value = source
    widget._method.value = "percentile"
    _apply_and_wait(widget, viewer, qtbot, 2)
    widget._per_slice.value = True
    widget.controls["low"].spin.value, widget.controls["high"].spin.value = 1.0, 99.0
    _apply_and_wait(widget, viewer, qtbot, 3)

    whole, per_slice = viewer.layers[1].data, viewer.layers[2].data
    assert viewer.layers[1].name == "em [percentile]" and viewer.layers[2].name != viewer.layers[1].name
    np.testing.assert_array_equal(whole, percentile_stretch(stack))
    np.testing.assert_array_equal(per_slice, percentile_stretch(stack, 1.0, 99.0, per_slice=True))
    assert whole[2].max() < 65535 / 2 and per_slice[2].max() == 65535  # the dark slice is stretched alone


def test_layer_choices_follow_the_viewer(viewer, stack):
    widget = EnhanceWidget(viewer)
    assert widget._image.value is None
    viewer.add_labels(np.zeros((8, 8), np.int32), name="labels")
    viewer.add_image(stack[0], name="a")
    assert list(widget._image.choices) == [viewer.layers["a"]]


def test_errors_are_reported_not_raised(viewer, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr(_common, "show_error", shown.append)
    widget = EnhanceWidget(viewer)
    widget._apply.native.click()  # no layer yet
    assert shown == ["add or choose an image layer first"]

    viewer.add_image(np.full((2, 3, 16, 16), 1.0), name="4d")  # 4D: core rejects it in the worker
    widget._image.value = viewer.layers["4d"]
    widget._apply.native.click()
    qtbot.waitUntil(lambda: len(shown) == 2, timeout=15000)
    assert "must be 2D (YX) or 3D (ZYX)" in shown[1]
    qtbot.waitUntil(lambda: widget._apply.enabled, timeout=15000)
    assert len(viewer.layers) == 1


def test_controls_come_from_the_registry(viewer):
    widget = EnhanceWidget(viewer)
    assert list(widget._method.choices) == list(METHODS) and widget._method.value == "agcwd"
    assert set(widget.controls) == set(all_params())
    for name, param in all_params().items():
        control = widget.controls[name]
        assert param.help[1:] in control.tooltip and param.range_text in control.tooltip
        assert control.spin.max == param.high
        assert control.spin.min == (param.low + param.step if param.low_open else param.low)
        assert control.value == param.default  # None: "auto" ticked
        with pytest.raises(ValueError):
            control.spin.value = param.high + 1  # the spin box refuses values outside the range
    for name, method in METHODS.items():
        widget._method.value = name
        shown = {n for n, control in widget.controls.items() if not control.native.isHidden()}
        assert shown == {p.name for p in method.params}
        assert widget.parameters() == check_params(name, {})  # the defaults are the registry's
        assert method.help in widget._method.tooltip


def test_automatic_bins_can_be_overridden(viewer, qtbot, rng):
    image = rng.integers(0, 60000, (20, 30)).astype(np.uint16)
    source = viewer.add_image(image, name="img")
    widget = EnhanceWidget(viewer)
    widget._image.value = source
    bins = widget.controls["bins"]
    assert not bins.spin.enabled and bins.value is None
    bins.auto.value = False
    bins.spin.value = 16
    assert bins.spin.enabled and widget.parameters() == {"alpha": 0.5, "bins": 16}
    _apply_and_wait(widget, viewer, qtbot, 2)
    np.testing.assert_array_equal(viewer.layers[1].data, agcwd(image, bins=16))
    assert not np.array_equal(viewer.layers[1].data, agcwd(image))
    assert viewer.layers[1].metadata[CALIBRATED_KEY] is False  # scale 1, no flag: pixels
    assert widget._progress.native.isHidden() and widget._progress.value == widget._progress.max == 1


def test_a_new_registry_row_gets_its_controls(viewer, monkeypatch):
    gain = Param("gain", float, 1.0, 0.5, 2.0, "how much brighter", step=0.1)
    flat = Method("flat", lambda d, gain: lambda x: 0 * x + 0.5, (gain,), "grey")
    monkeypatch.setitem(METHODS, "flat", flat)
    widget = EnhanceWidget(viewer)
    widget._method.value = "flat"
    assert not widget.controls["gain"].native.isHidden() and widget.controls["alpha"].native.isHidden()
    widget.controls["gain"].spin.value = 1.5
    assert widget.parameters() == {"gain": 1.5}


def test_a_lazy_layer_is_read_in_the_worker_not_the_viewer(viewer, qtbot, stack):
    import threading

    import dask
    import dask.array as da

    readers = []

    def record(block):
        readers.append(threading.current_thread())
        return block

    lazy = da.from_array(stack, chunks=(1, 24, 32)).map_blocks(record, dtype=stack.dtype)
    source = viewer.add_image(lazy, name="lazy")
    widget = EnhanceWidget(viewer)
    widget._image.value = source
    widget._method.value = "percentile"
    with dask.config.set(scheduler="synchronous"):  # blocks are read by the thread that asks
        readers.clear()
        _apply_and_wait(widget, viewer, qtbot, 2)
    assert len(readers) >= 3 and threading.main_thread() not in readers
    np.testing.assert_array_equal(viewer.layers["lazy [percentile]"].data,
                                  percentile_stretch(stack))
