"""Blockwise prediction: equal to one pass over the whole volume, independent of the block size,
resumable; receptive-field measurement; block plans."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cardioseg.core import nets, zarr_io
from napari_cardioseg.core.blocks import (
    block_geometry,
    card_halo,
    fixed_normalization_card,
    plan_blocks,
    predict_blocks,
)
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard
from napari_cardioseg.core.nets import size_multiple, spec_ndim
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization
from napari_cardioseg.core.predict import predict_probabilities, probabilities_to_labels
from napari_cardioseg.core.progress import drain

NORM = {"method": "percentile", "low": 1.0, "high": 99.0}



def measure_halo(model: torch.nn.Module, spec: dict, *, limit: int = 128, probes: int = 2,
                 seed: int = 0) -> int:
    """Receptive-field radius of ``model`` in pixels, measured by back-propagation (test oracle).

    The gradient of the summed logits of one stride-sized patch at the centre of a random input
    is non-zero exactly where the input influences that patch (union over ``probes`` random
    inputs, so dead ReLUs do not hide part of it). Returns the larger per-side extent beyond the
    patch over all axes; ``limit`` if the influence reaches the probe's border.
    """
    ndim = spec_ndim(spec)
    multiple = size_multiple(spec)
    size = math.ceil((2 * limit + multiple) / multiple) * multiple
    start = (size // 2) // multiple * multiple
    patch = (slice(None), slice(None), *(slice(start, start + multiple),) * ndim)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    seen = torch.zeros((size,) * ndim, dtype=torch.bool)
    try:
        with torch.enable_grad():
            for _ in range(probes):
                x = torch.randn((1, int(spec["in_channels"]), *(size,) * ndim),
                                generator=generator, requires_grad=True)
                model(x)[patch].sum().backward()
                if x.grad is not None:  # None only for a net whose output ignores its input
                    seen |= (x.grad != 0).any(dim=1)[0]
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    radius = 0
    for axis in range(ndim):
        others = tuple(a for a in range(ndim) if a != axis)
        hit = torch.nonzero(seen.any(dim=others) if others else seen).flatten()
        if hit.numel() == 0:
            continue
        low, high = int(hit.min()), int(hit.max())
        if low == 0 or high == size - 1:
            return limit
        radius = max(radius, start - low, high - (start + multiple - 1))
    return radius

def tiny(arch: str, classes: int, **options) -> tuple[torch.nn.Module, ModelCard]:
    """A small random net with non-trivial batch-norm statistics and a head re-drawn and biased
    so that its labels vary (an untrained head tends to give one class everywhere)."""
    spec = {"arch": arch, "in_channels": 1, "classes": classes, **options}
    torch.manual_seed(0)
    model = nets.build_model(spec).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        model.head.weight.normal_(0.0, 1.0)
        model.head.bias.zero_()
        probe = 0.5 + 0.2 * torch.randn((1, 1) + (32,) * nets.spec_ndim(spec))
        logits = model(probe)
        margins = (logits - logits[:, :1]).transpose(0, 1).reshape(classes, -1)
        model.head.bias -= margins.median(dim=1).values
    names = ["background"] + [f"c{i}" for i in range(1, classes)]
    return model, ModelCard("tiny", spec, names, NORM, None)


@pytest.fixture(scope="module")
def net2d():
    model, card = tiny("unet2d", 3, depth=2, base=4)
    return model, card, measure_halo(model, card.spec, limit=48)


@pytest.fixture(scope="module")
def net3d():
    model, card = tiny("unet3d", 2, depth=1, base=4)
    return model, card, measure_halo(model, card.spec, limit=16)


def whole(volume, model, card):
    """One pass over the whole volume with the blockwise run's normalisation numbers."""
    prob = predict_probabilities(volume, model, fixed_normalization_card(card, volume),
                                 tile=4096, device="cpu")
    return prob, probabilities_to_labels(prob)


def blockwise(volume, model, card, block, halo, **kwargs):
    classes = card.spec["classes"]
    labels = np.full(volume.shape, 255, np.uint8)
    prob = np.full((classes - 1, *volume.shape), np.nan, np.float32)
    drain(predict_blocks(volume, model, card, labels, block=block, halo=halo, device="cpu",
                         probabilities=prob, **kwargs))
    return prob, labels


def test_measured_halo_is_the_receptive_field(net2d, rng):
    """Changing one input pixel at distance halo + 1 from a patch leaves the patch unchanged;
    at distance halo it changes it."""
    model, _, halo = net2d
    assert 8 <= halo <= 40
    size, start = 128, 64  # patch [64, 68) is one stride (4 px) wide
    x = torch.from_numpy(rng.normal(size=(1, 1, size, size)).astype(np.float32))
    model.eval()
    with torch.no_grad():
        base = model(x)[..., start:start + 4, start:start + 4]
        changed = []
        for distance in (halo, halo + 1):
            y = x.clone()
            y[..., start + 1, start - distance] += 5.0
            changed.append(bool((model(y)[..., start:start + 4, start:start + 4] != base).any()))
    assert changed == [True, False]


@pytest.mark.parametrize("shape", [(2, 100, 90), (70, 90)])
def test_blockwise_equals_whole_2d(net2d, rng, shape):
    model, card, halo = net2d
    volume = rng.normal(100, 20, shape).astype(np.float32)
    prob, labels = whole(volume, model, card)
    for block in (24, 40):  # several blocks each way, last ones partial
        got_prob, got = blockwise(volume, model, card, block, halo)
        np.testing.assert_array_equal(got, labels)
        np.testing.assert_allclose(got_prob, prob[1:], atol=1e-6)
    assert np.sort(np.bincount(labels.ravel()))[-2] > 0.1 * labels.size  # not one class only


def test_blockwise_equals_whole_3d(net3d, rng):
    model, card, halo = net3d
    volume = rng.integers(0, 4000, (26, 29, 23)).astype(np.uint16)
    prob, labels = whole(volume, model, card)
    for block in (12, (10, 16, 16)):
        got_prob, got = blockwise(volume, model, card, block, halo)
        np.testing.assert_array_equal(got, labels)
        np.testing.assert_allclose(got_prob, prob[1:], atol=1e-6)
    assert 0.1 < labels.mean() < 0.9


def test_too_small_a_halo_changes_the_result(net2d, rng):
    """The equality above is not trivial: a halo under the receptive field breaks it."""
    model, card, _ = net2d
    volume = rng.normal(100, 20, (70, 90)).astype(np.float32)
    prob, _ = whole(volume, model, card)
    got_prob, _ = blockwise(volume, model, card, 24, 4)
    assert np.abs(got_prob - prob[1:]).max() > 1e-4  # 100x the tolerance above


def test_resume_after_interruption_is_identical(net2d, rng, tmp_path):
    model, card, halo = net2d
    image = rng.normal(100, 20, (2, 96, 64)).astype(np.float32)
    source = zarr_io.write_ome_zarr(tmp_path / "in.zarr", image, (1.0, 0.1, 0.1),
                                    chunks=(1, 32, 32), labels=False)
    volume = zarr_io.read_ome_zarr(source).data  # lazy zarr array
    _, reference = blockwise(image, model, card, 32, halo)

    path = tmp_path / "out.zarr"
    group = zarr_io.create_ome_zarr(path, image.shape, np.uint8, (1.0, 0.1, 0.1),
                                    chunks=(2, 32, 32))

    def run(skip):
        return predict_blocks(volume, model, card, group["0"], block=32, halo=halo, device="cpu",
                              skip=skip, on_block_done=lambda i: zarr_io.mark_block_done(path, i))

    steps = run(())
    progress = [next(steps) for _ in range(3)]  # fitting + 2 of 6 blocks, then "Ctrl-C"
    steps.close()
    assert [p.done for p in progress] == [0, 1, 2] and progress[-1].total == 6
    assert len(zarr_io.done_blocks(path)) == 2
    assert zarr_io.read_ome_zarr(path).complete is False
    finished = zarr_io.done_blocks(path)
    steps = run(finished)
    first = next(steps)
    assert (first.done, first.total) == (2, 6)
    assert drain(steps) == 4  # only the missing blocks were predicted
    np.testing.assert_array_equal(group["0"][...], reference)


def test_zscore_fit_becomes_the_same_fixed_range(rng):
    volume = rng.normal(3, 2, (40, 50)).astype(np.float32)
    _, card = tiny("unet2d", 2, depth=1, base=2)
    card = ModelCard(card.name, card.spec, card.class_names, {"method": "zscore"}, None)
    fixed = fixed_normalization_card(card, volume)
    assert fixed.normalization["method"] == "fixed"
    np.testing.assert_allclose(
        apply_normalization(volume, fit_normalization(volume, fixed.normalization)),
        apply_normalization(volume, fit_normalization(volume, card.normalization)), atol=1e-5)
    constant = fixed_normalization_card(card, np.full((8, 8), 7.0))
    assert constant.normalization == {"method": "fixed", "min": 7.0, "max": 8.0}


def test_plan_covers_every_voxel_once():
    plan = plan_blocks((10, 23), (4, 10), (1, 3))
    count = np.zeros((10, 23), int)
    for b in plan:
        count[b.core] += 1
        region = np.zeros((10, 23), bool)
        region[b.region] = True
        assert region[b.core].all()
        assert all(r.start >= 0 and r.stop <= n for r, n in zip(b.region, (10, 23), strict=True))
    assert (count == 1).all() and len(plan) == 3 * 3
    assert plan[4].region == (slice(3, 9), slice(7, 23))
    assert plan[4].inner == (slice(1, 5), slice(3, 13))


def test_geometry_rounds_to_the_stride(net2d, net3d):
    _, card2, _ = net2d
    _, card3, _ = net3d
    assert block_geometry(card2.spec, (5, 300, 300), 30, 21) == ((5, 32, 32), (0, 24, 24))
    assert block_geometry(card3.spec, (30, 30, 30), (9, 16, 15), 21) == ((10, 16, 16), (22,) * 3)
    with pytest.raises(CardiosegError, match="3D model needs a ZYX"):
        block_geometry(card3.spec, (30, 30), 16, 0)
    with pytest.raises(CardiosegError, match="block must be"):
        block_geometry(card2.spec, (30, 30), 0, 0)


@pytest.mark.parametrize("which", ["net2d", "net3d"])
def test_card_halo_covers_the_measured_receptive_field(which, request):
    _model, card, measured = request.getfixturevalue(which)
    halo = card_halo(card)
    field = card.receptive_field_px()
    assert halo == tuple(-(-f // 2) for f in field)  # ceil(rf / 2) per axis
    assert min(halo) >= measured > 0
    ndim = nets.spec_ndim(card.spec)
    shape = (40,) * ndim
    _block, full = block_geometry(card.spec, shape, 16, halo)
    assert all(h % nets.size_multiple(card.spec) == 0 and h >= measured for h in full)


def test_blockwise_equals_whole_smoothed_across_slices(net2d, rng):
    """With z_sigma each block reads the smoothing's reach in Z: equal to one smoothed pass."""
    from scipy import ndimage as ndi

    model, card, halo = net2d
    volume = rng.normal(100, 20, (40, 50, 60)).astype(np.float32)
    fixed = fixed_normalization_card(card, volume)
    plain = predict_probabilities(volume, model, fixed, tile=4096, device="cpu")
    prob = predict_probabilities(volume, model, fixed, tile=4096, device="cpu", z_sigma=1.0)
    np.testing.assert_allclose(prob, ndi.gaussian_filter1d(plain, 1.0, axis=1, mode="reflect",
                                                           radius=3), atol=1e-6)
    assert np.abs(prob - plain).max() > 1e-3
    block, halos = block_geometry(card.spec, volume.shape, 512, halo, z_halo=3)
    assert block[0] == 24 and halos[0] == 3  # two Z blocks (8 halos deep), each reading 3 more
    assert block_geometry(card.spec, volume.shape, 512, halo)[0][0] == 16  # 4 Mvoxel blocks
    # larger blocks deepen only up to twice the voxels: 1024 px holds 4 slices, 8 when smoothed
    assert block_geometry(card.spec, (99, 2048, 2048), 1024, halo, z_halo=3)[0][0] == 8
    assert block_geometry(card.spec, (99, 2048, 2048), 1024, halo)[0][0] == 4
    # a store laid out before the width was known keeps its depth, smoothed or not
    for z_halo in (0, 3):
        assert block_geometry(card.spec, volume.shape, (24, 512, 512), halo, z_halo)[0][0] == 24
    with pytest.raises(CardiosegError, match="block must be"):
        block_geometry(card.spec, volume.shape, (0, 512, 512), halo)
    got_prob, got = blockwise(volume, model, card, 512, halo, z_sigma=1.0)
    np.testing.assert_array_equal(got, probabilities_to_labels(prob))
    np.testing.assert_allclose(got_prob, prob[1:], atol=1e-6)
    _, unsmoothed = blockwise(volume, model, card, 512, halo)
    assert (unsmoothed != got).mean() > 0.001  # hundreds of voxels change
