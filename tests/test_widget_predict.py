"""The Predict widget in a real viewer: labels on top of the input, model list, stop."""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import pytest
import torch
from qtpy.QtCore import QTimer

from napari_cardioseg.core import models, nets
from napari_cardioseg.core.colors import class_color
from napari_cardioseg.core.predict import predict_labels, predict_probabilities, probabilities_to_labels
from napari_cardioseg.core.tiling import count_tiles
from napari_cardioseg.widgets._common import refresh_model_lists
from napari_cardioseg.widgets.predict import LOAD_FILE, PredictWidget

SPEC = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path / "home"))
    return tmp_path


def save_tiny(path, name="tiny", license="") -> tuple[torch.nn.Module, models.ModelCard]:
    torch.manual_seed(0)
    model = nets.build_model(SPEC).eval()
    card = models.ModelCard(name, SPEC, ["background", "zdisk"], {"method": "zscore"}, None,
                            license=license)
    models.save_model(model, card, path)
    return model, card


def run_and_wait(widget, qtbot):
    with qtbot.waitSignal(widget._run.changed, timeout=1000):
        widget._run.native.click()
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=20000)


def test_run_adds_labels_with_scale_and_translate(viewer, qtbot, home, rng):
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    pretrained = [f"{e.name} (pretrained)" for e in models.list_models()]
    assert [label for label, _ in widget._model_choices()] == [*pretrained, LOAD_FILE]  # no user models
    model, card = save_tiny(models.user_models_dir(create=True) / "tiny")
    refresh_model_lists(viewer)  # what the Train widget calls after saving
    assert str(models.user_models_dir() / "tiny.json") in widget._model.choices
    choices = dict(widget._model_choices())
    assert choices["tiny (user)"] == str(models.user_models_dir() / "tiny.json")
    widget._model.value = choices["tiny (user)"]

    stack = rng.normal(0, 1, (2, 40, 60)).astype(np.float32)
    source = viewer.add_image(stack, name="em", scale=(0.05, 0.01, 0.02), translate=(1, 2, 3))
    assert widget._image.choices == (source,)  # napari's layer-typed choice follows the layers
    widget._image.value = source
    widget._tile.value, widget._batch.value, widget._device.value = 32, 2, "cpu"
    widget._prob.value = True
    run_and_wait(widget, qtbot)

    tiles = count_tiles(stack.shape, card.spec, 32, 0.25)
    assert widget._progress.max == widget._progress.value == tiles  # the bar ends full
    labels = viewer.layers["em tiny labels"]  # named after the image and the model
    expected = predict_probabilities(stack, model, card, tile=32, overlap=0.25, device="cpu")
    np.testing.assert_array_equal(labels.data, probabilities_to_labels(expected))
    np.testing.assert_allclose(labels.scale, (0.05, 0.01, 0.02))
    np.testing.assert_allclose(labels.translate, (1, 2, 3))
    assert labels.data.dtype == np.uint8
    assert labels.colormap.map(0)[3] == 0  # predicted background is transparent
    np.testing.assert_allclose(labels.colormap.map(1), class_color(1))  # = scribble value 2
    prob = viewer.layers["em tiny probabilities"]
    np.testing.assert_allclose(prob.data, expected[1], atol=2e-5)
    np.testing.assert_allclose(prob.scale, (0.05, 0.01, 0.02))

    widget._flips.value = True  # test-time flips reach the core call
    run_and_wait(widget, qtbot)
    flipped = predict_probabilities(stack, model, card, tile=32, overlap=0.25, device="cpu", flips=True)
    newest = viewer.layers[-1]  # a new run adds new layers ("em tiny probabilities [1]")
    assert newest.name.startswith("em tiny probabilities") and newest is not prob
    np.testing.assert_allclose(newest.data, flipped[1], atol=2e-5)
    assert not np.allclose(flipped[1], expected[1], atol=1e-3)


def test_model_file_and_stop(viewer, qtbot, home, rng):
    (home / "elsewhere").mkdir()
    save_tiny(home / "elsewhere" / "file_model", name="from file")
    widget = PredictWidget(viewer)
    widget.load_model_file(home / "elsewhere" / "file_model.safetensors")
    assert widget._model.value == str(home / "elsewhere" / "file_model.json")
    source = viewer.add_image(rng.normal(0, 1, (30, 64, 64)).astype(np.float32), name="big")
    widget._image.value = source
    widget._tile.value, widget._batch.value, widget._device.value = 16, 1, "cpu"
    widget._run.native.click()
    worker = widget.worker
    with qtbot.waitSignal(worker.finished, timeout=20000):
        widget._stop.native.click()
    # stopped before the end: no result layer
    assert not any(layer.name.startswith("big from file labels") for layer in viewer.layers)
    assert widget._run.enabled and not widget._stop.enabled
    assert widget._status.value == "stopped: nothing was added" and widget._progress.value == 0


def record_activity_bar(widget):
    """The (done, total) napari's activity bar of the widget's next worker ends with."""
    state = {}

    def on_run():
        pbar = widget.worker.pbar
        pbar.events.value.connect(lambda event: state.update(n=pbar.n, total=pbar.total))

    widget._run.changed.connect(on_run)
    return lambda _widget: (state.get("n"), state.get("total"))


_SECOND = datetime(2026, 1, 2, 3, 4, 5)


class _OutOfMemoryAbove(torch.nn.Module):
    """Raises out-of-memory for tiles wider than ``limit`` px, like a full GPU."""

    def __init__(self, net: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit = net, limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


def test_bar_takes_the_new_total_after_an_out_of_memory_retry(viewer, qtbot, home, rng,
                                                              monkeypatch):
    model, card = save_tiny(home / "oom")
    monkeypatch.setattr("napari_cardioseg.widgets.predict_jobs.load_model",
                        lambda path: (_OutOfMemoryAbove(model, 40), card))
    monkeypatch.setattr("napari_cardioseg.widgets.predict.gui_backend",
                        lambda _model: "eager")  # OOM is eager's
    widget = PredictWidget(viewer)
    widget.load_model_file(home / "oom.json")
    image = rng.normal(0, 1, (120, 120)).astype(np.float32)
    widget._image.value = viewer.add_image(image, name="cells")
    widget._tile.value, widget._batch.value, widget._device.value = 128, 4, "cpu"
    widget_pbar_state = record_activity_bar(widget)
    run_and_wait(widget, qtbot)
    assert count_tiles(image.shape, card.spec, 128, 0.25) == 1  # the total the run started with
    # 120 -> 60 -> 30 px tiles, the net's halo cut to the 4 px that fit 30 px tiles
    retried = count_tiles(image.shape, card.spec, 30, 0.25, halo=4)
    assert widget._progress.max == widget._progress.value == retried > 1
    assert widget_pbar_state(widget) == (retried, retried)  # napari's activity bar too
    assert widget._progress.tooltip == ("out of cpu memory: retrying with tiles of 30×30 px "
                                        "and a halo of 4×4 px")
    assert widget._status.value == "done: cells tiny labels"
    expected = predict_probabilities(image, model, card, tile=30, overlap=0.25, device="cpu",
                                     halo=4)
    np.testing.assert_array_equal(viewer.layers["cells tiny labels"].data,
                                  probabilities_to_labels(expected))


def test_event_loop_keeps_ticking_while_predicting(viewer, qtbot, home, rng, monkeypatch):
    from napari_cardioseg.core import backends

    save_tiny(models.user_models_dir(create=True) / "tiny")
    card = models.read_card(models.user_models_dir() / "tiny.json")
    monkeypatch.setattr(backends, "_ONNX_CACHE", {})  # earlier tests exported the same weights
    monkeypatch.setenv("CARDIOSEG_CACHE_DIR", str(home / "cache"))
    started = []
    spawn = backends.cache_onnx_in_background
    monkeypatch.setattr(backends, "cache_onnx_in_background",
                        lambda model: started.append(spawn(model)) or started[-1])
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    widget._model.value = str(models.user_models_dir() / "tiny.json")
    widget._image.value = viewer.add_image(rng.normal(0, 1, (8, 256, 256)).astype(np.float32))
    widget._tile.value, widget._device.value = 64, "cpu"
    largest = []
    ticks: list[float] = []
    for run in range(2):
        ticks[:] = [time.perf_counter()]
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        t0 = time.perf_counter()
        widget.run()  # loading the model happens in the worker: the click returns at once
        click = time.perf_counter() - t0
        qtbot.waitUntil(lambda: widget._run.enabled, timeout=20000)
        qtbot.wait(50)
        timer.stop()
        largest.append(np.diff(ticks).max())
        assert widget._status.value.startswith("done") and click < 0.1
        if run == 0:  # the first run: eager, while another process exports the ONNX graph
            assert len(started) == 1 and started[0].wait(timeout=120) == 0
            assert backends.onnx_cached(card)
    assert len(started) == 1  # the second run found the graph cached: ONNX Runtime, no export
    print(f"\nlargest event-loop gap while predicting: first run {largest[0] * 1000:.0f} ms, "
          f"second {largest[1] * 1000:.0f} ms")
    assert largest[0] < 0.5 and largest[1] < 0.5  # about 0.1 s on an idle machine
    assert len([ly for ly in viewer.layers if "tiny labels" in ly.name]) == 2  # one per run


@pytest.mark.filterwarnings("ignore::ResourceWarning",  # bioimageio.spec leaves zip files open
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_export_to_bioimageio(viewer, qtbot, home, rng, monkeypatch):
    pytest.importorskip("bioimageio.spec")
    from napari_cardioseg.core.bioimageio_import import REGISTRY, load_bioimageio

    for name, arch in REGISTRY.items():  # imported architectures for this test only
        monkeypatch.setitem(nets.ARCHITECTURES, name, arch)
    model, card = save_tiny(home / "mine", name="mine", license="MIT")
    target = home / "exported"  # the dialog's answer lacks the suffix: .zip is added
    monkeypatch.setattr("napari_cardioseg.widgets.model_export.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(target), ""))
    widget = PredictWidget(viewer)
    widget.load_model_file(home / "mine.json")
    widget._export.native.click()
    qtbot.waitUntil(lambda: widget.export_worker is not None, timeout=5000)
    qtbot.waitUntil(lambda: widget._export.enabled, timeout=120000)
    package = home / "exported.zip"
    assert package.is_file() and widget._status.value == "exported exported.zip"
    net, imported = load_bioimageio(package)
    image = rng.normal(0, 1, (40, 48)).astype(np.float32)
    ref = predict_probabilities(image, model, card, device="cpu")
    got = predict_probabilities(image, net, imported, device="cpu")
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_export_without_a_model_is_a_clear_error(viewer, monkeypatch):
    reported = []
    monkeypatch.setattr("napari_cardioseg.widgets.predict.report_error", reported.append)
    widget = PredictWidget(viewer)
    widget._refreshing = True  # choosing LOAD_FILE must not open the dialog here
    widget._model.value = LOAD_FILE
    widget.export()
    assert [str(e) for e in reported] == ["choose a model to export"]


def test_large_layer_streams_into_a_store_shown_while_it_fills(viewer, qtbot, home, rng,
                                                               monkeypatch):
    import dask.array as da
    import zarr

    from napari_cardioseg.core.predict import predict_labels

    model, card = save_tiny(models.user_models_dir(create=True) / "tiny")
    image = rng.normal(0, 1, (6, 96, 96)).astype(np.float32)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    widget._model.value = str(models.user_models_dir() / "tiny.json")
    widget._image.value = viewer.add_image(da.from_array(image, chunks=(1, 48, 48)), name="big",
                                           scale=(1.0, 0.5, 0.5))  # lazy: streamed
    widget._tile.value, widget._device.value = 32, "cpu"
    run_and_wait(widget, qtbot)
    stream = widget.stream
    layer = viewer.layers["big tiny labels"]
    assert layer is stream.layer and isinstance(layer.data, zarr.Array)  # shown from the store
    assert tuple(layer.scale) == (1.0, 0.5, 0.5)
    assert widget._status.value == f"done: {stream.path}"
    info = zarr.open_group(str(stream.path), mode="r").attrs["cardioseg"]
    assert info["complete"] is True
    widget._prob.value = True  # a second run within the same second: a store of its own
    monkeypatch.setattr("napari_cardioseg.widgets.predict_jobs.datetime",
                        type("Frozen", (), {"now": staticmethod(lambda: _SECOND)}))
    run_and_wait(widget, qtbot)
    run_and_wait(widget, qtbot)
    paths = [viewer.layers[name].metadata["store"] for name in ("big tiny labels [1]",
                                                                "big tiny labels [2]")]
    assert len(set(paths)) == 2 and paths[1].endswith("-2.ome.zarr")
    assert "probabilities are not kept" in widget._status.value
    from napari_cardioseg.core.zarr_io import read_ome_zarr

    stored = read_ome_zarr(stream.path)
    assert stored.calibrated is True and stored.scale == pytest.approx((1.0, 0.5, 0.5))
    expected = predict_labels(image, model, card, device="cpu")  # the in-memory prediction
    assert np.mean(np.asarray(layer.data) == expected) >= 0.999
    assert widget._progress.value == widget._progress.max > 1  # one step per block and level


@pytest.mark.parametrize("continuous", [True, False])
def test_streamed_blocks_are_the_store_chunks_smoothed_or_not(viewer, qtbot, home, rng,
                                                              monkeypatch, continuous):
    import dask.array as da
    from scipy import ndimage as ndi

    from napari_cardioseg.core import blocks
    from napari_cardioseg.core.predict import predict_labels

    monkeypatch.setattr(blocks, "BLOCK_VOXELS", 32 * 32 * 4)  # 4 slices of 32 px, 8 smoothed
    model, card = save_tiny(models.user_models_dir(create=True) / "tiny")
    image = rng.normal(0, 1, (20, 96, 96)).astype(np.float32)
    if continuous:  # slices that continue each other are smoothed (one slice), others are not
        image = ndi.gaussian_filter(image, 2.0)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    widget._model.value = str(models.user_models_dir() / "tiny.json")
    widget._image.value = viewer.add_image(da.from_array(image, chunks=(1, 48, 48)), name="big",
                                           scale=(1.0, 0.5, 0.5))  # calibrated, lazy: streamed
    widget._tile.value, widget._device.value = 32, "cpu"
    totals = []
    widget.run()
    widget.worker.yielded.connect(lambda p: totals.append(p.total) if p.stage == "predict" else None)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    store = widget.stream.layer.data
    assert store.chunks[0] == 8 and totals[-1] == store.nchunks == 3 * 3 * 3  # one block a chunk
    expected = predict_labels(image, model, card, device="cpu", z_sigma=1.0 if continuous else 0)
    assert np.mean(np.asarray(store) == expected) >= 0.999


def test_stopping_a_streamed_prediction_keeps_the_finished_blocks(viewer, qtbot, home, rng,
                                                                  monkeypatch):
    import zarr

    monkeypatch.setattr("napari_cardioseg.widgets.predict_jobs.LARGE_VOXELS", 0)
    save_tiny(models.user_models_dir(create=True) / "tiny")
    widget = PredictWidget(viewer)
    widget._model.value = str(models.user_models_dir() / "tiny.json")
    widget._image.value = viewer.add_image(rng.normal(0, 1, (768, 768)).astype(np.float32),
                                           name="cells")  # NumPy, but over the (lowered) threshold
    widget._tile.value, widget._batch.value, widget._device.value = 64, 1, "cpu"
    blocks = []
    widget.run()
    widget.worker.yielded.connect(lambda p: blocks.append(p) if p.stage != "load" else None)
    qtbot.waitUntil(lambda: len(blocks) >= 2, timeout=20000)
    with qtbot.waitSignal(widget.worker.finished, timeout=20000):
        widget.stop()
    path = widget.stream.path
    assert widget._status.value == f"stopped: the finished blocks stay in {path}"
    assert "cells tiny labels" in viewer.layers  # what is done stays on screen
    assert not zarr.open_group(str(path), mode="r").attrs["cardioseg"].get("complete")
    axes = zarr.open_group(str(path), mode="r").attrs["multiscales"][0]["axes"]
    assert all("unit" not in ax for ax in axes)  # the layer has no pixel size: none invented
    assert blocks[-1].total > len(blocks)  # stopped before the end


def test_opening_a_widget_warms_the_first_run_costs(home, viewer):
    """The warm-up thread imports the heavy modules and freezes long-lived objects out of the GC."""
    import gc
    import sys

    from napari_cardioseg.widgets import workers

    PredictWidget(viewer)
    assert workers._warming, "opening the widget starts the warm-up"
    workers._warming[0].join(timeout=120)
    assert not workers._warming[0].is_alive()
    assert "onnxruntime" in sys.modules
    assert gc.get_freeze_count() > 10_000  # napari's, vispy's and torch's objects


def test_calibrated_isotropic_stack_is_smoothed_across_slices(viewer, qtbot, home, volume):
    """The widget smooths a 2D model's stack across slices when the layer is calibrated
    (here one slice), and leaves an uncalibrated one as predicted."""
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    model, card = save_tiny(models.user_models_dir(create=True) / "tiny")
    refresh_model_lists(viewer)
    widget._model.value = dict(widget._model_choices())["tiny (user)"]
    widget._tile.value, widget._batch.value, widget._device.value = 32, 2, "cpu"
    widget._prob.value = True
    stack = volume((8, 40, 48)).astype(np.float32)
    independent = predict_probabilities(stack, model, card, tile=32, overlap=0.25, device="cpu")
    for name, scale, sigma in (("iso", (0.01, 0.01, 0.01), 1.0), ("plain", (1, 1, 1), 0.0)):
        widget._image.value = viewer.add_image(stack, name=name, scale=scale)
        run_and_wait(widget, qtbot)
        expected = predict_probabilities(stack, model, card, tile=32, overlap=0.25, device="cpu",
                                         z_sigma=sigma)
        np.testing.assert_array_equal(viewer.layers[f"{name} tiny labels"].data,
                                      probabilities_to_labels(expected))
        shown = viewer.layers[f"{name} tiny probabilities"].data
        np.testing.assert_allclose(shown, expected[1], atol=2e-5)
        assert (np.abs(shown - independent[1]).max() > 1e-3) == (sigma > 0)
        assert viewer.layers[f"{name} tiny labels"].metadata["cardioseg_z_sigma"] == sigma
        assert ("smoothed across slices, 1.00 slices wide" in widget._status.value) == (sigma > 0)


def test_a_3d_net_on_a_calibrated_stack_reads_no_slices_to_decide_smoothing(viewer, qtbot, home,
                                                                            volume, monkeypatch):
    """Smoothing across slices is for 2D nets: a 3D net's run neither smooths nor reads the
    slice crops that decide whether a stack's slices continue each other."""
    from napari_cardioseg.core import slice_smooth

    def no_reading(image):
        raise AssertionError("slice continuity read for a 3D net")

    monkeypatch.setattr(slice_smooth, "slice_continuity", no_reading)
    spec = {"arch": "unet3d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    torch.manual_seed(0)
    model = nets.build_model(spec).eval()
    card = models.ModelCard("tiny3d", spec, ["background", "mito"], {"method": "zscore"}, None)
    models.save_model(model, card, models.user_models_dir(create=True) / "tiny3d")
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    widget._model.value = str(models.user_models_dir() / "tiny3d.json")
    widget._tile.value, widget._device.value = 16, "cpu"
    stack = volume((8, 32, 32)).astype(np.float32)
    widget._image.value = viewer.add_image(stack, name="iso", scale=(0.01, 0.01, 0.01))
    run_and_wait(widget, qtbot)
    labels = viewer.layers["iso tiny3d labels"]
    assert labels.metadata["cardioseg_z_sigma"] == 0
    np.testing.assert_array_equal(labels.data, predict_labels(stack, model, card, tile=16,
                                                              overlap=0.25, device="cpu"))


def test_output_layers_keep_the_calibration_flag(viewer, qtbot, home, rng):
    """A Z step of an uncalibrated stack never becomes µm in the labels; a 1 µm pixel stays one."""
    from napari_cardioseg.core.units import CALIBRATED_KEY, is_calibrated

    save_tiny(models.user_models_dir(create=True) / "tiny")
    widget = PredictWidget(viewer)
    widget._model.value = str(models.user_models_dir() / "tiny.json")
    widget._tile.value, widget._device.value = 32, "cpu"
    widget._prob.value = True
    image = rng.normal(0, 1, (3, 32, 32)).astype(np.float32)
    for name, scale, flag in (("zstep", (5, 1, 1), False), ("one", (1, 1, 1), True)):
        widget._image.value = viewer.add_image(image, name=name, scale=scale,
                                               metadata={CALIBRATED_KEY: flag})
        run_and_wait(widget, qtbot)
        for what in ("labels", "probabilities"):
            layer = viewer.layers[f"{name} tiny {what}"]
            assert layer.metadata[CALIBRATED_KEY] is flag
            assert is_calibrated(layer.metadata, layer.scale) is flag


def test_in_memory_prediction_of_a_multiscale_layer_uses_full_resolution(home, rng):
    """A bioimage.io package is never streamed, so a multiscale layer reaches the in-memory
    path (napari's array of it is the coarsest level)."""
    from napari.layers import Image

    from napari_cardioseg.core.predict import predict_labels
    from napari_cardioseg.core.progress import drain
    from napari_cardioseg.widgets.predict_jobs import predict_layers

    model, card = save_tiny(home / "tiny")
    image = rng.normal(0, 1, (64, 64)).astype(np.float32)
    layer = Image([image, image[::2, ::2]], multiscale=True, name="pyramid", rotate=20)
    labels, *_ = drain(predict_layers(str(home / "tiny.json"), layer, False, tile=32,
                                      device="cpu"))
    np.testing.assert_array_equal(labels.data, predict_labels(image, model, card, tile=32,
                                                              device="cpu"))
    np.testing.assert_allclose(labels.rotate, layer.rotate)
