"""``cardioseg predict IN -o OUT.zarr``: streaming into OME-Zarr, equal to one pass, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_cardioseg.cli import main
from napari_cardioseg.core import zarr_io
from napari_cardioseg.core.blocks import fixed_normalization_card
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.io import read_single
from napari_cardioseg.core.one_file import predict_file
from napari_cardioseg.core.predict import predict_probabilities, probabilities_to_labels
from napari_cardioseg.core.progress import drain
from napari_cardioseg.core.run import open_lazy, predict_to_zarr
from napari_cardioseg.core.writes import write_tiff

SCALE = (0.03, 0.005, 0.004)


@pytest.fixture
def stack(tmp_path, rng):
    data = rng.integers(0, 255, (3, 70, 90)).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", data, SCALE)
    return data


def whole(data, model, card):
    """One pass; random slices do not continue each other and are not smoothed across."""
    prob = predict_probabilities(data, model, fixed_normalization_card(card, data), tile=4096,
                                 device="cpu")
    return prob, probabilities_to_labels(prob)


def test_cli_streams_into_ome_zarr(tmp_path, stack, user_model, capsys):
    model, card = user_model
    out, prob_out = tmp_path / "labels.ome.zarr", tmp_path / "prob.zarr"
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o", str(out),
                 "--prob", str(prob_out), "--tile", "32", "--device", "cpu"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    labels = zarr_io.read_ome_zarr(out)
    assert labels.complete is True and labels.scale == pytest.approx(SCALE)
    assert labels.data.chunks == (3, 32, 32) and labels.data.dtype == np.uint8
    prob, expected = whole(stack, model, card)
    np.testing.assert_array_equal(labels.data[...], expected)
    assert np.sort(np.bincount(expected.ravel()))[-2] > 0.05 * expected.size  # not one class
    probs = zarr_io.read_ome_zarr(prob_out)
    assert probs.axes == "CZYX" and probs.data.dtype == np.uint8 and probs.complete is True
    assert np.abs(probs.data[...] / 255.0 - prob[1:]).max() <= 0.5 / 255 + 1e-6
    # another block size gives the same labels (the halo covers the receptive field)
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o",
                 str(tmp_path / "big.zarr"), "--tile", "64", "--device", "cpu"]) == 0
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(tmp_path / "big.zarr").data[...], expected)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, stack, user_model):
    out = tmp_path / "o.zarr"
    steps = predict_to_zarr(tmp_path / "in.tif", "tiny", out, tile=32, device="cpu", halo=24)
    for _ in range(4):  # the normalisation fit and three of nine blocks
        next(steps)
    steps.close()
    assert zarr_io.read_ome_zarr(out).complete is False
    assert len(zarr_io.done_blocks(out)) == 3
    with pytest.raises(CardiosegError, match="incomplete"), open_lazy(out):
        pass
    steps = predict_to_zarr(tmp_path / "in.tif", "tiny", out, tile=32, device="cpu", halo=24)
    first = next(steps)
    assert first.done == 3 and first.total == 9 + 0  # nine blocks, no downsampled levels
    assert drain(steps) == out
    again = drain(predict_to_zarr(tmp_path / "in.tif", "tiny", tmp_path / "fresh.zarr", tile=32,
                                  device="cpu", halo=24, resume=False))
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(out).data[...],
                                  zarr_io.read_ome_zarr(again).data[...])
    assert zarr_io.read_ome_zarr(out).complete is True
    # a different command does not reuse the finished blocks
    steps = predict_to_zarr(tmp_path / "in.tif", "tiny", out, tile=64, device="cpu", halo=24)
    assert next(steps).done == 0
    steps.close()


def test_an_input_changed_since_is_predicted_afresh(tmp_path, stack, user_model):
    """The same command on an input rewritten in place (same name and shape, say re-enhanced)
    must not reuse the finished store, nor resume an interrupted one, made from the old input."""
    import os

    model, card = user_model
    out, path = tmp_path / "o.zarr", tmp_path / "in.tif"
    drain(predict_to_zarr(path, "tiny", out, tile=32, device="cpu"))
    inverted = (255 - stack).astype(stack.dtype)
    write_tiff(path, inverted, SCALE)
    os.utime(path, ns=(1, 10**18))  # a new time even within one tick of the file system's clock
    steps = predict_to_zarr(path, "tiny", out, tile=32, device="cpu")
    assert next(steps).done == 0  # the finished store is not reused
    for _ in range(3):  # three of nine blocks, then interrupted
        next(steps)
    steps.close()
    assert len(zarr_io.done_blocks(out)) >= 2
    write_tiff(path, stack, SCALE)  # the input changes back before the rerun
    os.utime(path, ns=(1, 2 * 10**18))
    steps = predict_to_zarr(path, "tiny", out, tile=32, device="cpu")
    assert next(steps).done == 0  # the interrupted run is not resumed
    drain(steps)
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(out).data[...], whole(stack, model, card)[1])


def test_ome_zarr_input_with_a_singleton_channel(tmp_path, stack, user_model):
    model, card = user_model
    zarr_io.write_ome_zarr(tmp_path / "in.zarr", stack[None], SCALE, axes="CZYX", labels=False)
    with open_lazy(tmp_path / "in.zarr") as (volume, scale, calibrated):
        assert volume.shape == stack.shape and scale == pytest.approx(SCALE) and calibrated
    out = drain(predict_to_zarr(tmp_path / "in.zarr", "tiny", tmp_path / "o.zarr", tile=48,
                                device="cpu"))
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(out).data[...],
                                  whole(stack, model, card)[1])


def test_bad_outputs(tmp_path, stack, user_model):
    with pytest.raises(CardiosegError, match=r"probabilities go to a \.zarr"):
        drain(predict_to_zarr(tmp_path / "in.tif", "tiny", tmp_path / "o.zarr",
                              prob_path=tmp_path / "p.tif"))
    with pytest.raises(CardiosegError, match="no such file"):
        drain(predict_to_zarr(tmp_path / "missing.tif", "tiny", tmp_path / "o.zarr"))


def test_lazy_tiff_input_checks_its_pixel_size_like_read_image(tmp_path):
    import tifffile

    data = np.zeros((2, 16, 16), np.uint8)
    tifffile.imwrite(tmp_path / "absurd.ome.tif", data, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 9e99, "PhysicalSizeY": 9e99})
    with pytest.raises(CardiosegError, match="not a plausible size"), \
            open_lazy(tmp_path / "absurd.ome.tif") as _:
        pass
    write_tiff(tmp_path / "ok.tif", data, SCALE)
    with open_lazy(tmp_path / "ok.tif") as (array, scale, calibrated):
        assert array.shape == data.shape and calibrated
        np.testing.assert_allclose(scale, SCALE)


def test_cli_prob_dtype_and_no_resume(tmp_path, stack, user_model, monkeypatch):
    del user_model  # the fixture saves the "tiny" model
    base = ["predict", str(tmp_path / "in.tif"), "--model", "tiny", "--tile", "32",
            "--device", "cpu", "--backend", "eager"]
    # float16 probabilities in OME-Zarr: the same numbers as the default uint8 to within 1/255
    assert main([*base, "-o", str(tmp_path / "a.zarr"), "--prob", str(tmp_path / "p8.zarr")]) == 0
    assert main([*base, "-o", str(tmp_path / "b.zarr"), "--prob", str(tmp_path / "p16.zarr"),
                 "--prob-dtype", "float16"]) == 0
    p8 = np.asarray(zarr_io.read_ome_zarr(tmp_path / "p8.zarr").data)
    p16 = np.asarray(zarr_io.read_ome_zarr(tmp_path / "p16.zarr").data)
    assert p8.dtype == np.uint8 and p16.dtype == np.float16
    np.testing.assert_allclose(p8 / 255.0, p16.astype(np.float32), atol=0.5 / 255 + 1e-3)
    # TIFF: float32 by default, uint8 when asked
    assert main([*base, "-o", str(tmp_path / "c.tif"), "--prob", str(tmp_path / "p.tif"),
                 "--prob-dtype", "uint8"]) == 0
    import tifffile

    assert tifffile.imread(tmp_path / "p-mito.tif").dtype == np.uint8
    # --no-resume: an earlier run's store is not even looked at for finished blocks
    looked = []
    real = zarr_io.open_incomplete
    monkeypatch.setattr(zarr_io, "open_incomplete", lambda *a: looked.append(a) or real(*a))
    assert main([*base, "-o", str(tmp_path / "a.zarr"), "--no-resume"]) == 0
    assert looked == [] and zarr_io.read_ome_zarr(tmp_path / "a.zarr").complete is True
    assert main([*base, "-o", str(tmp_path / "a.zarr")]) == 0  # the default resumes
    assert len(looked) == 1


def test_rows_of_blocks_as_dask_tasks_equal_one_process(tmp_path, rng, user_model):
    pytest.importorskip("distributed")
    image = rng.integers(0, 255, (150, 100)).astype(np.uint8)
    write_tiff(tmp_path / "flat.tif", image, SCALE[1:])
    one = drain(predict_to_zarr(tmp_path / "flat.tif", "tiny", tmp_path / "one.zarr", tile=32,
                                device="cpu", halo=8))
    # an interrupted run (two blocks done), then finished by two local dask workers
    out = tmp_path / "two.zarr"
    steps = predict_to_zarr(tmp_path / "flat.tif", "tiny", out, tile=32, device="cpu", halo=8)
    for _ in range(3):
        next(steps)
    steps.close()
    assert len(zarr_io.done_blocks(out)) == 2
    progress = list(predict_to_zarr(tmp_path / "flat.tif", "tiny", out, tile=32, device="cpu",
                                    halo=8, workers=2))
    assert "5 rows of blocks as dask tasks" in progress[0].message  # 150 px / 32 px rows
    assert progress[0].done == 2 and progress[-1].done == progress[-1].total
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(out).data[...],
                                  zarr_io.read_ome_zarr(one).data[...])
    assert zarr_io.read_ome_zarr(out).complete is True
    # a TIFF output streams through a hidden store, so its rows can be dask tasks too
    drain(predict_file(tmp_path / "flat.tif", tmp_path / "x.tif", model="tiny", tile=32,
                       device="cpu", workers=2))
    drain(predict_file(tmp_path / "flat.tif", tmp_path / "y.zarr", model="tiny", tile=32,
                       device="cpu"))
    np.testing.assert_array_equal(read_single(tmp_path / "x.tif").data,
                                  zarr_io.read_ome_zarr(tmp_path / "y.zarr").data[...])


def test_an_uncalibrated_input_gives_an_uncalibrated_store(tmp_path, rng, user_model):
    image = rng.integers(0, 255, (40, 52)).astype(np.uint8)
    write_tiff(tmp_path / "plain.tif", image, None)  # no pixel size
    drain(predict_to_zarr(tmp_path / "plain.tif", "tiny", tmp_path / "p.zarr", device="cpu"))
    store = zarr_io.read_ome_zarr(tmp_path / "p.zarr")
    assert store.complete is True and store.calibrated is False  # no invented 1 µm
    write_tiff(tmp_path / "cal.tif", image, SCALE[1:])
    drain(predict_to_zarr(tmp_path / "cal.tif", "tiny", tmp_path / "c.zarr", device="cpu"))
    calibrated = zarr_io.read_ome_zarr(tmp_path / "c.zarr")
    assert calibrated.calibrated is True and calibrated.scale == pytest.approx(SCALE[1:])


def test_inverting_model_streams_like_the_plain_model_on_the_negated_image(tmp_path, stack,
                                                                           user_model):
    """A card with ``"invert": true`` (saved by a run that inverted the contrast) streamed into
    OME-Zarr and predicted in memory equals the plain model on the inverted image."""
    import dataclasses

    from napari_cardioseg.core import models

    model, card = user_model
    inverted = dataclasses.replace(card, name="tiny-inv",
                                   normalization={"method": "zscore", "invert": True})
    models.save_model(model, inverted, models.user_models_dir() / "tiny-inv")
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny-inv", "-o",
                 str(tmp_path / "inv.ome.zarr"), "--tile", "32", "--device", "cpu"]) == 0
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny-inv", "-o",
                 str(tmp_path / "inv.tif"), "--device", "cpu"]) == 0
    _, expected = whole((255 - stack.astype(np.int16)).astype(np.uint8), model, card)
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(tmp_path / "inv.ome.zarr").data[...],
                                  expected)
    agree = np.mean(read_single(tmp_path / "inv.tif").data == expected)
    assert agree > 0.999  # the in-memory path tiles differently: float rounding at ties only
    _, plain = whole(stack, model, card)
    assert np.mean(plain == expected) < 0.9  # the inversion changes the answer


def test_isotropic_stack_is_smoothed_across_slices_in_every_path(tmp_path, volume, user_model):
    """A calibrated isotropic stack: in memory, streamed into zarr and through the CLI, the
    probabilities are smoothed across slices by one slice; uncalibrated, they are not."""
    model, card = user_model
    data = volume((20, 40, 48))
    write_tiff(tmp_path / "iso.tif", data, (0.005, 0.005, 0.005))
    write_tiff(tmp_path / "plain.tif", data, None)
    fixed = fixed_normalization_card(card, data)
    smoothed = probabilities_to_labels(predict_probabilities(data, model, fixed, tile=4096,
                                                             device="cpu", z_sigma=1.0))
    independent = probabilities_to_labels(predict_probabilities(data, model, fixed, tile=4096,
                                                                device="cpu"))
    assert (smoothed != independent).mean() > 0.01
    drain(predict_to_zarr(tmp_path / "iso.tif", "tiny", tmp_path / "iso.zarr", tile=32,
                          device="cpu"))
    stored = zarr_io.read_ome_zarr(tmp_path / "iso.zarr")
    np.testing.assert_array_equal(stored.data[...], smoothed)
    run = zarr.open_group(str(tmp_path / "iso.zarr"), mode="r").attrs["cardioseg"]["run"]
    assert run["z_sigma"] == pytest.approx(1.0) and run["halo"][0] == 3
    drain(predict_to_zarr(tmp_path / "plain.tif", "tiny", tmp_path / "plain.zarr", tile=32,
                          device="cpu"))
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(tmp_path / "plain.zarr").data[...],
                                  independent)
    assert main(["predict", str(tmp_path / "plain.tif"), "--model", "tiny", "-o",
                 str(tmp_path / "forced.zarr"), "--tile", "32", "--device", "cpu",
                 "--z-sigma", "1"]) == 0
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(tmp_path / "forced.zarr").data[...],
                                  smoothed)
    assert main(["predict", str(tmp_path / "iso.tif"), "--model", "tiny", "-o",
                 str(tmp_path / "off.zarr"), "--tile", "32", "--device", "cpu",
                 "--z-sigma", "0"]) == 0
    np.testing.assert_array_equal(zarr_io.read_ome_zarr(tmp_path / "off.zarr").data[...],
                                  independent)
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "iso.tif"), "--model", "tiny", "-o",
              str(tmp_path / "bad.zarr"), "--z-sigma", "-1"])
