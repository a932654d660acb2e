"""TrainWidget in a real viewer: scribbles layer, live preview, stop, predict, save."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_cardioseg.core.colors import BACKGROUND, class_color
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import PRETRAINED_DIR, list_models, suggested_name, user_models_dir
from napari_cardioseg.core.nets import ARCHITECTURES, scratch_choices
from napari_cardioseg.core.progress import drain
from napari_cardioseg.core.train_preview import view_prediction_steps
from napari_cardioseg.widgets.live_preview import LIVE, UNCERTAIN
from napari_cardioseg.widgets.loss_plot import smooth
from napari_cardioseg.widgets.predict import PredictWidget
from napari_cardioseg.widgets.train import TrainWidget, start_choices
from test_train import disks


@pytest.fixture
def widget(viewer, monkeypatch, tmp_path):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    image, scribbles, _ = disks()
    viewer.add_image(image, name="cells", scale=(0.5, 0.25), translate=(3.0, 4.0))
    w = TrainWidget(viewer)
    w._unit.value = "steps"  # budgets below count steps (the default is seconds)
    viewer.window.add_dock_widget(w)
    layer = w.new_scribbles()
    layer.data[:] = scribbles
    return w


def test_new_layer_train_live_preview_and_save(widget, viewer, qtbot):
    layer = viewer.layers["cells scribbles"]
    assert layer.data.shape == (64, 128) and tuple(layer.scale) == (0.5, 0.25)
    assert tuple(layer.translate) == (3.0, 4.0)
    assert widget._init.value == ("init", str(PRETRAINED_DIR / "mito-em.json"))
    assert "1 = background" in widget._help.value  # the card's names before any training
    assert "2 = mitochondrion" in widget._help.value
    widget._budget.value = 4
    yielded = []
    widget.train()
    widget.worker.yielded.connect(yielded.append)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert [p.done for p in yielded][-1] == 4
    live = viewer.layers[LIVE]
    assert tuple(live.scale) == (0.5, 0.25) and tuple(live.translate) == (3.0, 4.0)
    previews = [p for p in yielded if p.preview is not None]
    assert previews and previews[0].done == 0  # the start model's preview, before any step
    # mito-em expects dark mitochondria; these disks are bright: the strokes invert the contrast
    assert yielded[0].message.startswith("contrast inverted")
    assert yielded[-1].message.endswith("(contrast inverted)")
    assert widget.result.card.normalization["invert"] is True
    assert widget._loss.value.startswith("done: 4 steps") and "contrast inverted" in widget._loss.value
    assert previews[-1].preview_region == (slice(0, 64), slice(0, 128))  # the view: all of it
    np.testing.assert_array_equal(live.data, previews[-1].preview)
    uncertain = viewer.layers[UNCERTAIN]  # where the next strokes help most
    assert tuple(uncertain.scale) == (0.5, 0.25) and uncertain.data.dtype == np.uint8
    np.testing.assert_array_equal(uncertain.data, np.rint(previews[-1].uncertainty * 255))
    assert 0 < uncertain.data.max() <= 255
    assert widget.result is not None and widget.result.card.training["steps"] == 4
    assert widget.result.card.pixel_size == [0.5, 0.25]
    assert widget.trained._predict.enabled and widget.trained._save.enabled
    predict = PredictWidget(viewer)
    viewer.window.add_dock_widget(predict)
    saved = widget.trained.save_model(user_models_dir(create=True) / "mine.json")
    assert "mine" in [e.name for e in list_models()]
    assert str(saved) in predict._model.choices  # the docked Predict widget was refreshed
    widget.trained.predict_whole()
    qtbot.waitUntil(lambda: widget.trained.worker is None, timeout=30000)
    labels = viewer.layers["cells mine labels"]
    assert labels.data.shape == (64, 128) and tuple(labels.scale) == (0.5, 0.25)


def test_stop_keeps_best_model_and_retraining_continues(widget, viewer, qtbot):
    widget._budget.value = 10_000
    widget.train()
    qtbot.waitUntil(lambda: widget.session is not None and len(widget.session.losses) >= 2,
                    timeout=30000)
    viewer.layers["cells scribbles"].data[46, 96:105] = 2  # a stroke painted while training
    widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=3000)  # stops within a step
    first = widget.result
    assert first is not None and first.card.training["steps"] >= 2
    widget._budget.value = 2
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert widget.session.init_name == first.card.name  # continued from the trained model
    assert widget.session.probe_fit is None  # a model trained from strokes is not re-probed
    second = widget.result
    assert second is not first and second.card.training["steps"] == 2
    assert widget.trained._undo.enabled
    assert viewer.layers[LIVE].data.any()  # the second round's last preview
    widget.trained._undo.native.click()  # back to the first round's model, shown on the view
    assert widget.result is first and not widget.trained._undo.enabled
    qtbot.waitUntil(lambda: widget.live.worker is None, timeout=30000)
    image = viewer.layers["cells"].data
    region, labels, uncertainty = drain(view_prediction_steps(image, widget.live.view,
                                                              first.model, first.card))
    assert region == (slice(0, 64), slice(0, 128)) and labels.any()
    np.testing.assert_array_equal(viewer.layers[LIVE].data, labels)
    np.testing.assert_array_equal(viewer.layers[UNCERTAIN].data, np.rint(uncertainty * 255))
    assert widget.trained._status.value == (
        f"back to the model before the last round ({first.card.training['steps']} steps)")
    widget._budget.value = 1
    widget.train()  # the next round continues from the restored model
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert widget.trained.earlier == [first] and widget.result.card.training["steps"] == 1
    widget.trained.reset()
    assert widget.result is None and not widget.trained._save.enabled
    assert widget.trained.earlier == [] and not widget.trained._undo.enabled
    assert not viewer.layers[LIVE].data.any() and not viewer.layers[UNCERTAIN].data.any()


def test_undo_on_a_stack_shows_the_slice_in_view(viewer, qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    stack = np.stack([disks(seed)[0] for seed in range(3)])
    viewer.add_image(stack, name="stack", scale=(1.0, 0.5, 0.5))
    w = TrainWidget(viewer)
    w._unit.value = "steps"
    viewer.window.add_dock_widget(w)
    w.new_scribbles().data[1] = disks(1)[1]
    for budget in (2, 1):  # two rounds, so Undo has a model to go back to
        w._budget.value = budget
        w.train()
        qtbot.waitUntil(lambda: w.worker is None, timeout=30000)
    first = w.trained.earlier[-1]
    viewer.dims.set_current_step(0, 2)  # look at the last slice, then undo
    w.trained._undo.native.click()
    qtbot.waitUntil(lambda: w.live.worker is None, timeout=30000)
    region, labels, _ = drain(view_prediction_steps(stack, w.live.view, first.model, first.card))
    assert region == (slice(2, 3), slice(0, 64), slice(0, 128))  # a 2D net: the slice in view
    live = viewer.layers[LIVE].data
    np.testing.assert_array_equal(live[2:3], labels)
    assert labels.any() and not live[:2].any()


def test_a_late_after_undo_preview_does_not_cover_the_next_training(widget, viewer, qtbot,
                                                                   monkeypatch):
    """Train clicked while the after-Undo preview still runs: that preview, finishing later,
    must not overwrite the new round's previews."""
    import threading

    from napari_cardioseg.widgets import live_preview

    for budget in (2, 1):
        widget._budget.value = budget
        widget.train()
        qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    release = threading.Event()

    def slow_preview(*args, **kwargs):
        release.wait(30)
        found = yield from view_prediction_steps(*args, **kwargs)
        return found[0], np.full_like(found[1], 7), found[2]  # recognisable if it lands

    monkeypatch.setattr(live_preview, "view_prediction_steps", slow_preview)
    widget.trained._undo.native.click()
    widget._budget.value = 1
    widget.train()  # while the after-Undo preview waits
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    trained = viewer.layers[LIVE].data.copy()
    release.set()
    qtbot.waitUntil(lambda: widget.live.worker is None, timeout=30000)
    assert not (trained == 7).any()
    np.testing.assert_array_equal(viewer.layers[LIVE].data, trained)


def test_errors_are_reported_not_raised(widget, viewer, qtbot, monkeypatch):
    errors = []
    monkeypatch.setattr("napari_cardioseg.widgets._common.report_error", errors.append)
    viewer.layers["cells scribbles"].data[:] = 0
    widget.train()  # checked in the worker: reported once it fails
    qtbot.waitUntil(lambda: widget.worker is None and len(errors) == 1, timeout=30000)
    assert "empty" in str(errors[-1]) and widget.result is None and widget._train.enabled
    viewer.layers["cells scribbles"].data[10, 10] = 1
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None and len(errors) == 2, timeout=30000)
    assert "only one class" in str(errors[-1])
    np.testing.assert_array_equal(viewer.layers["cells scribbles"].data[10, 9:12], [0, 1, 0])


def test_closing_the_viewer_stops_training(widget, viewer, qtbot):
    widget._budget.value = 10_000
    widget.train()
    qtbot.waitUntil(lambda: widget.session is not None and len(widget.session.losses) >= 1,
                    timeout=30000)
    worker = widget.worker
    with qtbot.waitSignal(worker.finished, timeout=5000):  # napari quits registered workers on close
        viewer.close()
    assert len(widget.session.losses) < 10_000


def test_closing_the_dock_stops_training(widget, viewer, qtbot):
    widget._budget.value = 10_000
    widget.train()
    qtbot.waitUntil(lambda: widget.session is not None and len(widget.session.losses) >= 1,
                    timeout=30000)
    worker = widget.worker
    with qtbot.waitSignal(worker.finished, timeout=5000):
        viewer.window.remove_dock_widget(widget.native)  # what the dock's close button does
    assert len(widget.session.losses) < 10_000
    assert viewer.layers  # the viewer and its layers are untouched


def test_start_from_lists_models_then_recommended_then_advanced_architectures(widget):
    choices = [value for _, value in start_choices()]
    assert choices == list(widget._init.choices)
    kinds = [kind for kind, _ in choices]
    assert kinds == sorted(kinds, key=lambda k: k != "init")  # saved models first
    archs = [name for kind, name in choices if kind == "arch"]
    recommended, advanced = scratch_choices()
    assert archs == recommended + advanced and archs[0] == "unet2d"
    assert set(archs) == set(ARCHITECTURES)  # every registry row offers training from scratch
    assert ("init", str(PRETRAINED_DIR / "mito-em.json")) in choices


def test_scribble_value_k_plus_1_and_prediction_k_share_a_colour(widget, viewer, qtbot):
    scribbles = viewer.layers["cells scribbles"]
    widget._budget.value = 1
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    live = viewer.layers[LIVE]
    for k in (1, 2, 3):
        np.testing.assert_allclose(scribbles.colormap.map(k + 1), live.colormap.map(k))
        np.testing.assert_allclose(live.colormap.map(k), class_color(k))
    np.testing.assert_allclose(scribbles.colormap.map(1), BACKGROUND)  # background strokes: grey
    assert live.colormap.map(0)[3] == 0 and scribbles.colormap.map(0)[3] == 0  # transparent
    assert not np.allclose(scribbles.colormap.map(1), live.colormap.map(1))  # the clash


def test_stop_message_smoothed_loss_plot_and_event_loop_gaps(widget, viewer, qtbot):
    ticks = [time.perf_counter()]
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    widget._budget.value = 10_000
    t0 = time.perf_counter()
    widget.train()
    click = time.perf_counter() - t0
    start = len(ticks)
    qtbot.waitUntil(lambda: len(widget._smoothed) >= 15, timeout=60000)
    gaps = np.diff(ticks[start:])
    widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
    timer.stop()
    losses = widget.session.losses
    shown = widget._smoothed
    expected = losses[0]
    for loss in losses[1:len(shown)]:
        expected = 0.9 * expected + 0.1 * loss  # the documented moving average
    assert shown[-1] == pytest.approx(expected) and widget._plot.values == shown
    assert smooth(None, 0.5) == 0.5 and smooth(1.0, 0.0) == pytest.approx(0.9)
    assert widget._loss.value.startswith(f"stopped after {len(losses)} steps; best model kept")
    assert (widget._progress.max, widget._progress.value) == (1, 1)  # not a busy bar any more
    assert widget._train.enabled and not widget._stop.enabled and widget.trained._save.enabled
    print(f"\nclick Train blocks {click * 1000:.0f} ms; largest event-loop gap while training "
          f"{gaps.max() * 1000:.0f} ms over {len(gaps)} ticks")
    assert gaps.max() < 1.0


def test_save_refuses_a_pretrained_name_and_suggests_a_finetuned_one(widget, qtbot, tmp_path,
                                                                     monkeypatch):
    widget._budget.value = 1
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert widget.result.card.name == "mito-em"  # fine-tuned from the pretrained model
    with pytest.raises(CardiosegError, match=r"pretrained model.*mito-em-finetuned-"):
        widget.trained.save_model(tmp_path / "mito-em.json")
    assert not (tmp_path / "mito-em.json").exists()
    offered = []

    def dialog(_parent, _title, default, _filter):
        offered.append(default)
        return "", ""  # cancelled

    monkeypatch.setattr("napari_cardioseg.widgets.trained_model.QFileDialog.getSaveFileName", dialog)
    widget.trained._save_dialog()
    day = datetime.now().strftime("%Y%m%d")
    assert Path(offered[0]).name == f"mito-em-finetuned-{day}.json"
    assert suggested_name("mine") == "mine"


@pytest.mark.filterwarnings("ignore::ResourceWarning",  # bioimageio.spec leaves zip files open
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_export_trained_model_asks_a_licence_when_the_card_has_none(widget, qtbot, tmp_path,
                                                                    monkeypatch):
    pytest.importorskip("bioimageio.spec")
    import zipfile

    widget._init.value = ("arch", "unet2d")  # from scratch: the card names no licence
    widget._budget.value = 1
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert widget.result.card.license == "" and widget.trained._export.enabled
    asked = []

    def licence(_parent, _title, _label, items, _current, _editable):
        asked.append(list(items))
        return ("", False) if len(asked) == 1 else ("MIT", True)  # cancel, then choose MIT

    monkeypatch.setattr("napari_cardioseg.widgets.model_export.QInputDialog.getItem", licence)
    target = tmp_path / "scratch.zip"
    monkeypatch.setattr("napari_cardioseg.widgets.model_export.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(target), ""))
    widget.trained.export()
    assert widget.trained.worker is None and not target.exists()  # cancelled: nothing written
    widget.trained.export()
    assert "MIT" in asked[-1] and not widget.trained._export.enabled  # busy while exporting
    qtbot.waitUntil(lambda: widget.trained.worker is None, timeout=180000)
    with zipfile.ZipFile(target) as package:
        rdf = next(n for n in package.namelist() if n.endswith("yaml"))
        assert "license: MIT" in package.read(rdf).decode()
    assert widget.trained._status.value == "exported scratch.zip"
    assert widget.trained._export.enabled


def test_a_multiscale_image_trains_at_full_resolution(viewer, qtbot, monkeypatch, tmp_path):
    # napari's array of a multiscale layer is its coarsest level; strokes are painted on level 0
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    image, scribbles, _ = disks()
    layer = viewer.add_image([image, image[::2, ::2]], name="pyramid", multiscale=True)
    w = TrainWidget(viewer)
    w._unit.value, w._budget.value = "steps", 2
    viewer.window.add_dock_widget(w)
    w._image.value = layer
    w._init.value = next(v for _, v in start_choices() if v[0] == "arch")  # nothing inherited
    w.new_scribbles().data[:] = scribbles
    w.train()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30000)
    assert w.result is not None and w.session.images[0].shape == image.shape
    assert w.result.card.pixel_size is None  # uncalibrated: no invented 1 µm
    errors = []
    monkeypatch.setattr("napari_cardioseg.widgets._common.show_error", errors.append)
    w.trained.predict_whole()  # not held in memory: the Predict widget streams it
    assert errors and "Predict widget" in str(errors[-1]) and w.trained.worker is None


def test_rgb_4d_and_misplaced_scribbles_are_refused_before_anything_runs(widget, viewer, qtbot,
                                                                          monkeypatch):
    errors = []
    monkeypatch.setattr("napari_cardioseg.widgets._common.show_error", errors.append)
    image = viewer.layers["cells"]
    for bad in (viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb"),
                viewer.add_image(np.zeros((2, 3, 32, 32), np.float32), name="tzyx")):
        widget._image.value = bad
        assert widget.new_scribbles() is None
        widget.train()
        assert widget.worker is None and bad.name in str(errors[-1])
        viewer.camera.center = (0, 10, 10)  # the live preview still follows the view
    assert "RGB" in str(errors[0]) and "4 axes" in str(errors[-1])
    widget._image.value = image
    viewer.layers["cells scribbles"].scale = (1.0, 1.0)  # strokes no longer over the image
    widget.train()
    assert widget.worker is None and "does not lie on 'cells'" in str(errors[-1])


def test_a_result_layer_is_never_trained_on_as_strokes(widget, viewer, qtbot, monkeypatch):
    """Deleting the scribbles layer lets the choice fall on another Labels layer; a layer the
    plugin computed (a prediction, the live preview) holds classes, not strokes."""
    errors = []
    monkeypatch.setattr("napari_cardioseg.widgets._common.show_error", errors.append)
    widget._budget.value = 1
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    widget.trained.predict_whole()
    qtbot.waitUntil(lambda: widget.trained.worker is None, timeout=30000)
    viewer.layers.remove("cells scribbles")
    for name in (LIVE, next(ly.name for ly in viewer.layers if ly.name.endswith(" labels"))):
        widget._scribbles.value = viewer.layers[name]
        widget.train()
        assert widget.worker is None and "is a result" in str(errors[-1])


def test_layers_made_on_a_rotated_image_lie_on_it(viewer, qtbot, monkeypatch, tmp_path):
    """Scribbles, live and predicted layers take the image's whole transform (rotate and affine
    too); strokes on a layer placed otherwise are refused."""
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    image, scribbles, _ = disks()
    layer = viewer.add_image(image, name="turned", scale=(0.5, 0.25), rotate=30,
                             affine=[[1, 0, 5], [0, 1, -3], [0, 0, 1]])
    w = TrainWidget(viewer)
    w._unit.value, w._budget.value = "steps", 1
    viewer.window.add_dock_widget(w)
    w._image.value = layer
    strokes = w.new_scribbles()
    strokes.data[:] = scribbles
    w.train()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30000)
    w.trained.predict_whole()
    qtbot.waitUntil(lambda: w.trained.worker is None, timeout=30000)
    point = (10.0, 20.0)
    for made in (strokes, viewer.layers[LIVE], viewer.layers[f"turned {w.result.card.name} labels"]):
        np.testing.assert_allclose(made.data_to_world(point), layer.data_to_world(point))
    errors = []
    monkeypatch.setattr("napari_cardioseg.widgets._common.show_error", errors.append)
    strokes.rotate = 0
    w.train()
    assert w.worker is None and "rotate" in str(errors[-1])
