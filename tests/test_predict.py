"""Sliding-window prediction: tiled == untiled, slice-by-slice 2D on 3D, array-likes, cancel."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from napari_cardioseg.core import nets
from napari_cardioseg.core.device import choose_device
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization
from napari_cardioseg.core.predict import (
    Prediction,
    label_dtype,
    predict_generator,
    predict_labels,
    predict_probabilities,
    predict_steps,
    probabilities_to_labels,
)
from napari_cardioseg.core.progress import Progress, drain
from napari_cardioseg.core.tiling import count_tiles, default_halo, halo_overlap, reflect_index, tile_axis

NORM = {"method": "percentile", "low": 1.0, "high": 99.0}
ATOL = 2e-5


def tiny(arch: str, classes: int = 3, **options) -> tuple[torch.nn.Module, ModelCard]:
    """A small net (receptive field well under the tests' overlaps) with non-trivial BN stats."""
    spec = {"arch": arch, "in_channels": 1, "classes": classes, **options}
    torch.manual_seed(0)
    model = nets.build_model(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    names = ["background"] + [f"c{i}" for i in range(1, classes)]
    return model, ModelCard("tiny", spec, names, NORM, None)


@pytest.fixture(scope="module")
def net2d():
    return tiny("unet2d", depth=2, base=4)


@pytest.fixture(scope="module")
def net3d():
    return tiny("unet3d", classes=2, depth=2, base=4)


def untiled(image, model, card):
    return predict_probabilities(image, model, card, tile=4096, device="cpu")


@pytest.mark.parametrize(("shape", "tile", "overlap"), [
    ((150, 203), 96, 0.5),   # odd shape, many tiles, last tiles shifted back
    ((97, 61), 64, 0.25),    # fewer pixels of overlap
    ((21, 30), 64, 0.25),    # smaller than one tile
    ((5, 3), 64, 0.25),      # smaller than the net's stride (reflection repeats)
])
def test_tiled_equals_untiled_2d(net2d, rng, shape, tile, overlap):
    model, card = net2d
    image = rng.normal(100, 20, shape).astype(np.float32)
    full = untiled(image, model, card)
    tiled = predict_probabilities(image, model, card, tile=tile, overlap=overlap, device="cpu")
    assert tiled.shape == (3, *shape) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, full, atol=ATOL)
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)


def test_tiled_equals_untiled_3d(net3d, rng):
    model, card = net3d
    image = rng.integers(0, 4000, (19, 45, 38)).astype(np.uint16)
    full = untiled(image, model, card)
    # halos smaller than the net's (the default would make these tiles one tile): 2 px in z,
    # 6 px in y and x still fit the tiles, and this net's effective field is smaller still
    kwargs = {"tile": (16, 32, 32), "overlap": 0.5, "halo": (2, 6, 6)}
    tiled = predict_probabilities(image, model, card, device="cpu", **kwargs)
    assert count_tiles(image.shape, card.spec, **kwargs) == 2 * 2 * 2
    np.testing.assert_allclose(tiled, full, atol=ATOL)


@pytest.mark.parametrize(("net", "shape", "small"), [
    ("net2d", (150, 203), 8),
    ("net3d", (9, 110, 100), 8),
])
def test_default_halo_makes_tile_size_irrelevant(net, shape, small, rng, request):
    model, card = request.getfixturevalue(net)
    image = rng.normal(100, 20, shape).astype(np.float32)
    halo = default_halo(nets.receptive_field(card.spec))
    assert all(h >= 18 for h in halo)  # half the receptive field of these depth-2 U-Nets
    assert count_tiles(shape, card.spec, small, 0.0) > 1  # really cut into tiles...
    tiled = predict_probabilities(image, model, card, tile=small, overlap=0.0, device="cpu")
    np.testing.assert_allclose(tiled, untiled(image, model, card), atol=ATOL)


def test_axis_keeps_the_halo_out_of_the_blend():
    # the shipped models: receptive field 315 px, stride 16; a 128 px tile asked for
    halo, multiple = default_halo((315, 315))[0], 16
    assert halo == 157 and halo_overlap(halo, multiple) == 336  # 2 * 157 + 16, rounded up
    axis = tile_axis(2000, 128, 0.25, multiple, halo)
    assert 336 <= axis.tile <= 2 * 336  # grown, then shrunk evenly
    assert all(a % multiple == 0 for a in axis.origins) and axis.origins[-1] + axis.tile >= 2000
    total = np.zeros(2000)
    for i, (a, w) in enumerate(zip(axis.origins, axis.weights, strict=True)):
        total[a : a + w.size] += w
        if i > 0:  # a cut edge on the left: its halo gets no weight
            assert axis.origins[i - 1] + axis.tile - a >= 336
            assert not w[:halo].any() and w[halo : halo + 16].any()
        if i + 1 < len(axis.origins):  # and on the right
            assert not w[axis.tile - halo :].any()
        else:
            assert w[-1] == 1.0  # the image border is not a cut edge
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert tile_axis(300, 128, 0.25, multiple, halo).origins == [0]  # fits one tile: no cut edge


def test_automatic_tiles_grow_with_the_halo():
    spec = {"arch": "unet-mobilenet_v2", "in_channels": 1, "classes": 2, "encoder_depth": 4}
    shipped = {"receptive_field": (315, 315)}
    # 3 x 336 = 1008 px tiles: a 1536 x 2048 image takes 2 x 3 tiles, not 4 x 4 of 512 px;
    # automatic tiles may grow by a quarter to save one: 2 x 2 tiles of at most 1216 px
    assert count_tiles((1536, 2048), spec, 1008, **shipped) == 6
    assert count_tiles((1536, 2048), spec, **shipped) == 4
    assert count_tiles((1024, 1024), spec, **shipped) == 1  # not 2 x 2 tiles of 640 px
    assert count_tiles((1536, 2048), spec, 512, halo=0) == 4 * 5  # a net without halo: 512 px
    assert count_tiles((1536, 2048), spec, halo=0) == 3 * 4  # automatic: up to 640 px
    assert count_tiles((40, 1536, 2048), spec, **shipped) == 40 * 4  # slice by slice


def test_2d_model_on_3d_stack_is_slice_by_slice(net2d, rng):
    model, card = net2d
    stack = rng.normal(0, 1, (3, 70, 50)).astype(np.float32)
    stack[1] += 5.0  # one brighter slice: normalisation is fitted on the whole stack
    prob = predict_probabilities(stack, model, card, tile=48, overlap=0.5, batch=5, device="cpu")
    fitted = fit_normalization(stack, card.normalization)
    whole = {**card.normalization}
    for z in range(3):  # the same numbers as predicting each slice with the stack's normalisation
        card_z = ModelCard("z", card.spec, card.class_names,
                           {"method": "fixed", "min": fitted["min"], "max": fitted["max"]}, None)
        np.testing.assert_allclose(prob[:, z], untiled(stack[z], model, card_z), atol=ATOL)
    assert card.normalization == whole


@pytest.mark.parametrize("net", ["net2d", "net3d"])
def test_flips_make_prediction_flip_equivariant(net, rng, request):
    model, card = request.getfixturevalue(net)
    shape = (40, 52) if net == "net2d" else (9, 40, 36)
    image = rng.normal(100, 20, shape).astype(np.float32)
    kwargs = {"tile": 32 if net == "net2d" else (8, 32, 32), "overlap": 0.5, "device": "cpu"}
    plain = predict_probabilities(image, model, card, **kwargs)
    averaged = predict_probabilities(image, model, card, flips=True, **kwargs)
    mirrored = predict_probabilities(image[..., ::-1, :].copy(), model, card, flips=True, **kwargs)
    # the flip average of an image and of its mirror image are mirror images of each other ...
    np.testing.assert_allclose(mirrored[..., ::-1, :], averaged, atol=ATOL)
    np.testing.assert_allclose(averaged.sum(axis=0), 1.0, atol=1e-5)
    # ... which a single pass is not, and the average is that of the four flipped passes
    assert np.abs(plain - averaged).max() > 1e-3
    manual = np.mean([np.flip(predict_probabilities(np.flip(image, axes).copy(), model, card, **kwargs),
                              tuple(a + image.ndim + 1 for a in axes))
                      for axes in [(), (-1,), (-2,), (-2, -1)]], axis=0)
    np.testing.assert_allclose(averaged, manual, atol=ATOL)


def test_3d_model_refuses_2d_image(net3d):
    model, card = net3d
    with pytest.raises(CardiosegError, match="3D and needs a ZYX stack"):
        predict_probabilities(np.zeros((32, 32), np.float32), model, card)


@pytest.mark.parametrize(("image", "kwargs", "message"), [
    (np.zeros((4, 5, 6, 7)), {}, "2D .* or 3D"),
    (np.zeros((40, 50, 3)), {}, "RGB"),
    (np.zeros((0, 5)), {}, "empty"),
    (np.zeros((8, 8)), {"overlap": 0.7}, "overlap"),
    (np.zeros((8, 8)), {"batch": 0}, "batch"),
    (np.zeros((8, 8)), {"tile": (8, 8, 8)}, "tile"),
    (np.zeros((8, 8)), {"halo": -1}, "halo must be"),
    (np.zeros((8, 8)), {"halo": (1, 2, 3)}, "halo must be"),
    (np.zeros((8, 8)), {"out": np.zeros((2, 8, 8), np.float32)}, "out has shape"),
    (np.full((8, 8), np.nan), {}, "no finite"),
    (np.zeros((8, 8)), {"device": "tpu"}, "device"),
])
def test_bad_input(net2d, image, kwargs, message):
    model, card = net2d
    with pytest.raises(CardiosegError, match=message):
        predict_probabilities(image, model, card, **kwargs)


def test_memmap_in_and_out(net2d, rng, tmp_path):
    model, card = net2d
    image = rng.normal(0, 1, (2, 60, 90)).astype(np.float32)
    src = np.lib.format.open_memmap(tmp_path / "in.npy", "w+", np.float32, image.shape)
    src[:] = image
    src.flush()
    src = np.load(tmp_path / "in.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "out.npy", "w+", np.float32, (3, *image.shape))
    out[:] = 7.0  # stale content must be overwritten
    result = predict_probabilities(src, model, card, tile=48, overlap=0.5, device="cpu", out=out)
    assert result is out
    np.testing.assert_allclose(out, predict_probabilities(image, model, card, device="cpu"),
                               atol=ATOL)


def test_generator_progress_and_cancel(net2d, rng):
    model, card = net2d
    model.train()
    image = rng.normal(0, 1, (100, 100)).astype(np.float32)
    total = count_tiles(image.shape, card.spec, 32, 0.25, halo=0)
    assert total == 16
    gen = predict_generator(image, model, card, tile=32, overlap=0.25, batch=3, device="cpu",
                            halo=0)
    steps = [next(gen) for _ in range(3)]
    assert steps == [Progress(0, 16, "predict"), Progress(3, 16, "predict"),
                     Progress(6, 16, "predict")]
    assert not model.training  # eval mode while predicting...
    gen.close()  # what a worker's quit() amounts to: no further tiles are computed
    assert model.training  # ...and the caller's mode restored afterwards
    model.eval()


def test_labels_from_probabilities(monkeypatch):
    prob = np.array([[[0.7, 0.1]], [[0.2, 0.3]], [[0.1, 0.6]]], np.float32)
    labels = probabilities_to_labels(prob)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, [[0, 2]])
    with pytest.raises(CardiosegError, match="C>=2"):
        probabilities_to_labels(np.ones((1, 4, 4)))
    # reduced block by block along the second axis: same answer as one argmax
    monkeypatch.setattr("napari_cardioseg.core.predict._ARGMAX_BLOCK", 7 * 3)
    big = np.random.default_rng(1).random((3, 10, 6, 5), np.float32)
    np.testing.assert_array_equal(probabilities_to_labels(big), np.argmax(big, axis=0))


def test_label_dtype_fits_the_classes():
    assert label_dtype(2) == np.uint8 and label_dtype(256) == np.uint8
    assert label_dtype(257) == np.uint16 and label_dtype(65536) == np.uint16
    with pytest.raises(CardiosegError, match="16-bit"):
        label_dtype(65537)
    prob = np.zeros((300, 2, 2), np.float32)
    prob[299, 0, 1] = prob[5, 1, 1] = 1.0
    labels = probabilities_to_labels(prob)
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, [[0, 299], [0, 5]])


class _InputVotes(torch.nn.Module):
    """A net whose classes 1 and 2 win where the input is bright or dark: varied labels."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + torch.cat([torch.zeros_like(x), 20 * x, -20 * x], dim=1)


def test_predict_steps_returns_probabilities_and_labels(net2d, rng):
    model, card = net2d
    model = _InputVotes(model)
    image = rng.normal(0, 1, (70, 50)).astype(np.float32)
    result = drain(predict_steps(image, model, card, tile=32, device="cpu"))
    assert isinstance(result, Prediction)
    prob = predict_probabilities(image, model, card, tile=32, device="cpu")
    np.testing.assert_array_equal(result.probabilities, prob)
    assert result.labels.dtype == np.uint8 and result.labels.shape == image.shape
    np.testing.assert_array_equal(result.labels, np.argmax(prob, axis=0))
    assert set(np.unique(result.labels)) == {0, 1, 2}  # a real argmax, not all background
    np.testing.assert_array_equal(predict_labels(image, model, card, tile=32, device="cpu"),
                                  result.labels)


class _OutOfMemoryAbove(torch.nn.Module):
    """Wraps a net and raises out-of-memory for tiles wider than ``limit`` px, like a full GPU."""

    def __init__(self, net: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit, self.calls = net, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        if x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


def test_out_of_memory_retry_yields_the_new_total(net2d, rng):
    model, card = net2d
    image = rng.normal(0, 1, (120, 120)).astype(np.float32)
    wrapped = _OutOfMemoryAbove(model, limit=40)
    gen = predict_steps(image, wrapped, card, tile=128, overlap=0.25, batch=4, device="cpu")
    steps, result = [], None
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert steps[0] == Progress(0, 1, "predict")  # one 120² tile: too wide, so halved twice
    retries = [p for p in steps[1:] if p.done == 0]
    found = [re.search(r"tiles of (\d+)×(\d+) px and a halo of (\d+)×(\d+) px", p.message)
             for p in retries]
    tiles = [tuple(int(v) for v in m.groups()[:2]) for m in found]
    halos = [tuple(int(v) for v in m.groups()[2:]) for m in found]
    assert tiles == [(60, 60), (30, 30)]  # halved: the net's full halo does not fit them...
    full = default_halo(nets.receptive_field(card.spec))
    assert full > halos[0] > halos[1] > (0, 0)  # ...so the halo is cut to what fits
    assert all(2 * halo_overlap(h, 4) <= t for t, h in zip(tiles, halos, strict=True)
               for t, h in zip(t, h, strict=True))
    totals = [count_tiles(image.shape, card.spec, t, 0.25, halo=h)
              for t, h in zip(tiles, halos, strict=True)]
    assert [p.total for p in retries] == totals and totals[0] < totals[1]
    assert steps[-1].done == steps[-1].total == totals[1]  # the bar ends full, on the new total
    assert all(p.done <= p.total for p in steps)
    expected = predict_probabilities(image, model, card, tile=30, overlap=0.25, device="cpu",
                                     halo=halos[1])
    np.testing.assert_allclose(result.probabilities, expected, atol=ATOL)
    np.testing.assert_array_equal(result.labels, np.argmax(expected, axis=0))


def test_out_of_memory_with_smallest_tiles_is_a_clear_error(net2d, rng):
    model, card = net2d
    wrapped = _OutOfMemoryAbove(model, limit=0)
    with pytest.raises(CardiosegError, match="out of cpu memory even with the smallest tiles"):
        predict_probabilities(rng.normal(0, 1, (20, 20)), wrapped, card, tile=16, device="cpu")
    assert min(shape[-1] for shape in wrapped.calls) == 4  # the net's stride: nothing smaller


def test_reflect_index_matches_numpy_pad():
    for n in (1, 2, 5):
        data = np.arange(n)
        expected = np.pad(data, (0, 13), mode="reflect") if n > 1 else np.zeros(n + 13, int)
        np.testing.assert_array_equal(data[reflect_index(np.arange(n + 13), n)], expected)


def test_choose_device():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(CardiosegError, match="no CUDA GPU"):
            choose_device("cuda")


def test_normalisation_fitted_once_applies_per_tile(rng):
    image = rng.gamma(2.0, 50.0, (300, 200))
    image[5, 5] = np.nan
    fitted = fit_normalization(image, {"method": "percentile", "low": 2.0, "high": 98.0})
    finite = image[np.isfinite(image)]
    assert fitted["method"] == "fixed" and fitted["fitted_from"] == "percentile"
    assert fitted["min"] == pytest.approx(np.percentile(finite, 2.0))
    assert fitted["max"] == pytest.approx(np.percentile(finite, 98.0))
    whole = apply_normalization(image, fitted)
    assert whole.dtype == np.float32 and whole[5, 5] == 0.0
    np.testing.assert_array_equal(apply_normalization(image[100:164, 30:94], fitted),
                                  whole[100:164, 30:94])
    z = fit_normalization(image, {"method": "zscore"})
    normed = apply_normalization(image, z)
    assert abs(np.nanmean(normed[np.isfinite(image)])) < 1e-4
    mm = fit_normalization(np.array([[2, 6]]), {"method": "minmax"})
    np.testing.assert_allclose(apply_normalization(np.array([2, 4, 6]), mm), [0, 0.5, 1])
    with pytest.raises(CardiosegError, match="min < max"):
        fit_normalization(image, {"method": "fixed", "min": 3, "max": 3})
