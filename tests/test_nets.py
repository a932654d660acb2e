"""Every architecture builds, maps inputs to logits of the right shape, trains (backward), swaps
its head, knows its encoder and receptive field, and round-trips through safetensors."""

from __future__ import annotations

import copy
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from napari_cardioseg.core import nets
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.nets.highres3dzm import ZeroMeanConv3d


class NetTester:
    """Shared checks; subclasses set ``spec`` (without classes) and a small input ``shape``."""

    spec: ClassVar[dict]
    shape: tuple[int, ...]  # spatial shape, a multiple of the net's stride

    @pytest.fixture(scope="class")
    def built(self) -> tuple[torch.nn.Module, dict]:
        """One model per architecture (building the big encoders takes seconds)."""
        spec = {"in_channels": 1, "classes": 2, **self.spec}
        torch.manual_seed(0)
        return nets.build_model(spec), spec

    def test_forward_backward(self, built):
        model, spec = built
        assert len(self.shape) == nets.spec_ndim(spec)
        assert all(s % nets.size_multiple(spec) == 0 for s in self.shape)
        x = torch.randn(2, 1, *self.shape)
        y = model(x)
        assert y.shape == (2, 2, *self.shape) and y.dtype == torch.float32
        assert torch.isfinite(y).all()
        y.square().mean().backward()
        encoder = {id(p) for m in nets.encoder_modules(model, spec) for p in m.parameters()}
        params = list(model.parameters())
        assert all(p.grad is not None for p in params if id(p) not in encoder)
        assert any(p.grad is not None for p in params if id(p) in encoder)
        assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
        model.zero_grad(set_to_none=True)

    def test_replace_head_keeps_other_weights(self, built):
        model, spec = copy.deepcopy(built)
        encoder_before = [p.detach().clone()
                          for m in nets.encoder_modules(model, spec) for p in m.parameters()]
        model, new_spec = nets.replace_head(model, spec, 3)
        assert new_spec["classes"] == 3 and spec["classes"] == 2
        model.eval()
        with torch.no_grad():
            y = model(torch.randn(1, 1, *self.shape))
        assert y.shape[1] == 3
        after = [p for m in nets.encoder_modules(model, spec) for p in m.parameters()]
        assert len(after) == len(encoder_before)
        assert all(torch.equal(a, b) for a, b in zip(after, encoder_before, strict=True))

    def test_encoder_is_a_strict_part(self, built):
        model, spec = built
        encoder = {id(p) for m in nets.encoder_modules(model, spec) for p in m.parameters()}
        everything = {id(p) for p in model.parameters()}
        assert encoder and encoder < everything

    def test_receptive_field_covers_the_stride(self, built):
        _, spec = built
        field = nets.receptive_field(spec)
        assert len(field) == nets.spec_ndim(spec)
        assert all(nets.size_multiple(spec) <= f <= nets.PROBE_MAX[len(field)] for f in field)
        assert nets.receptive_field({**spec, "classes": 5}) == field  # classes do not matter

    def test_state_dict_round_trip_through_safetensors(self, built):
        model, spec = built
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        fresh = nets.build_model(spec)
        fresh.load_state_dict(st_load(st_save(state)), strict=True)
        model.eval()
        fresh.eval()
        x = torch.randn(1, 1, *self.shape)
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), model(x))


class TestUnetVgg11(NetTester):
    spec: ClassVar[dict] = {"arch": "unet-vgg11", "encoder_depth": 3}
    shape = (16, 16)


class TestUnetPPEfficientNetB4(NetTester):
    spec: ClassVar[dict] = {"arch": "unetpp-efficientnet-b4", "encoder_depth": 3}
    shape = (16, 16)


class TestFPNResnet34(NetTester):
    spec: ClassVar[dict] = {"arch": "fpn-resnet34"}
    shape = (64, 64)


class TestDeepLabV3PlusResnet34(NetTester):
    spec: ClassVar[dict] = {"arch": "deeplabv3plus-resnet34"}
    shape = (64, 64)


class TestUnetResnet18(NetTester):
    spec: ClassVar[dict] = {"arch": "unet-resnet18", "encoder_depth": 3}
    shape = (16, 24)


class TestUnetMobilenetV2(NetTester):
    spec: ClassVar[dict] = {"arch": "unet-mobilenet_v2", "encoder_depth": 3}
    shape = (24, 40)


class TestUnet2d(NetTester):
    spec: ClassVar[dict] = {"arch": "unet2d", "depth": 2, "base": 4}
    shape = (12, 20)


class TestUnet3d(NetTester):
    spec: ClassVar[dict] = {"arch": "unet3d", "depth": 2, "base": 4}
    shape = (8, 12, 16)


class TestHighRes3DZM(NetTester):
    spec: ClassVar[dict] = {"arch": "highres3dzm", "channels": [4, 4, 8], "blocks": 1}
    shape = (6, 9, 11)


class TestPix2Pix(NetTester):
    spec: ClassVar[dict] = {"arch": "pix2pix", "depth": 3, "base": 8}
    shape = (16, 24)


def test_every_registered_architecture_is_tested():
    tested = {cls.spec["arch"] for cls in NetTester.__subclasses__()}
    assert tested == set(nets.ARCHITECTURES)


def test_receptive_fields_of_known_geometry():
    base = {"in_channels": 1, "classes": 2}
    # HighRes3DZMNet: a 3x3x3 layer, then per stage `blocks` x two 3x3x3 convolutions dilated
    # by 1, 2, 4: 3 + 28 * blocks pixels
    for blocks in (1, 2):
        spec = {**base, "arch": "highres3dzm", "channels": [4, 4, 8], "blocks": blocks}
        assert nets.receptive_field(spec) == (3 + 28 * blocks,) * 3
    # U-Net depth 2: two 3x3 convolutions per level and per side, a 2x2 pooling per level:
    # at most 1 + 4 + 1 + 8 + 2 + 16 + 8 + 4 = 44 px; one output pixel may see a pooling
    # window less on each side
    field = nets.receptive_field({**base, "arch": "unet2d", "depth": 2, "base": 4})
    assert field[0] == field[1] and 44 - 2 * 3 <= field[0] <= 44
    assert nets.receptive_field({**base, "arch": "deeplabv3plus-resnet34"}) == (nets.PROBE_MAX[2],) * 2


def test_scratch_options_and_recommended_choices():
    recommended, advanced = nets.scratch_choices()
    assert recommended[0] == "unet2d" and "unet3d" in recommended
    assert set(recommended) | set(advanced) == {
        name for name, arch in nets.ARCHITECTURES.items() if arch.scratch is not None}
    assert not set(recommended) & set(advanced)
    spec = nets.scratch_spec("unet3d", 3)
    assert spec == {"arch": "unet3d", "in_channels": 1, "classes": 3, "depth": 3, "base": 8}
    assert nets.build_model(spec).eval()(torch.zeros(1, 1, 8, 8, 8)).shape == (1, 3, 8, 8, 8)


def test_unknown_arch_lists_valid_names():
    with pytest.raises(CardiosegError, match=r"unknown architecture 'unet-foo'.*unet-mobilenet_v2"):
        nets.build_model({"arch": "unet-foo", "in_channels": 1, "classes": 2})


@pytest.mark.parametrize("bad", [{"classes": 1}, {"classes": "2"}, {"in_channels": 0}])
def test_bad_spec_fields(bad):
    with pytest.raises(CardiosegError, match="spec"):
        nets.build_model({"arch": "unet2d", "in_channels": 1, "classes": 2, **bad})


def test_bad_options_are_reported():
    with pytest.raises(CardiosegError, match="encoder_depth must be 5"):
        nets.build_model({"arch": "fpn-resnet34", "in_channels": 1, "classes": 2,
                          "encoder_depth": 3})
    with pytest.raises(CardiosegError, match="3 widths"):
        nets.build_model({"arch": "highres3dzm", "in_channels": 1, "classes": 2, "channels": [4]})


@pytest.mark.parametrize(("options", "message"), [
    ({"arch": "unet2d", "depth": 40}, r"'depth' must be an integer in 1\.\.6"),
    ({"arch": "unet3d", "base": 0}, r"'base' must be an integer in 1\.\.64"),
    ({"arch": "unet-resnet18", "encoder_depth": 6}, r"'encoder_depth' must be an integer in 3\.\.5"),
    ({"arch": "highres3dzm", "channels": [4, 4, 4096]}, r"'channels' must be an integer in 1\.\.256"),
    ({"arch": "pix2pix", "depth": True}, "'depth' must be an integer"),
])
def test_option_bounds_are_checked_before_building(options, message):
    spec = {"in_channels": 1, "classes": 2, **options}
    with pytest.raises(CardiosegError, match=message):
        nets.check_options(spec)
    with pytest.raises(CardiosegError, match=message):
        nets.build_model(spec)


def test_registry_rows_name_their_builders():
    for name, arch in nets.ARCHITECTURES.items():
        spec = {"arch": name, "in_channels": 1, "classes": 2}
        assert nets.check_options(spec) is arch  # defaults are inside the bounds
        module = arch.module()
        assert callable(getattr(module, arch.builder.partition(":")[2]))
        assert callable(module.encoder) and callable(module.replace_head)


def test_size_multiples():
    base = {"in_channels": 1, "classes": 2}
    assert nets.size_multiple({**base, "arch": "unet-resnet18"}) == 32
    assert nets.size_multiple({**base, "arch": "unet-mobilenet_v2", "encoder_depth": 3}) == 8
    assert nets.size_multiple({**base, "arch": "unet3d", "depth": 4}) == 16
    assert nets.size_multiple({**base, "arch": "highres3dzm"}) == 1
    assert nets.size_multiple({**base, "arch": "pix2pix"}) == 64


def test_pix2pix_binary_softmax_is_the_sigmoid_generator():
    torch.manual_seed(0)
    model = nets.build_model({"arch": "pix2pix", "in_channels": 1, "classes": 2, "depth": 2,
                              "base": 4}).eval()
    logits = model(torch.randn(1, 1, 8, 8))
    assert torch.equal(logits[:, 0], torch.zeros_like(logits[:, 0]))
    torch.testing.assert_close(torch.softmax(logits, 1)[:, 1], torch.sigmoid(logits[:, 1]))


def test_zero_mean_holds_after_optimiser_steps():
    torch.manual_seed(0)
    spec = {"arch": "highres3dzm", "in_channels": 1, "classes": 2, "channels": [4, 4, 8],
            "blocks": 1}
    model = nets.build_model(spec)
    first = next(m for m in model.modules() if isinstance(m, ZeroMeanConv3d))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.rand(2, 1, 8, 10, 10)
    target = (x > 0.5).long()[:, 0]
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), target).backward()
        opt.step()
    kernels = first.effective_weight().detach()
    assert kernels.abs().sum(dim=(2, 3, 4)).min() > 1e-3  # the kernels are not trivially zero
    torch.testing.assert_close(kernels.mean(dim=(2, 3, 4)), torch.zeros(4, 1), atol=1e-7,
                               rtol=0)
    assert first.weight.mean(dim=(2, 3, 4)).abs().max() > 1e-4  # raw weights drifted...
    nets.zero_mean_constraint(model)  # ...and projecting them changes nothing that is applied
    torch.testing.assert_close(first.weight.detach(), kernels)
    model.eval()
    with torch.no_grad():  # brightness offsets do not change the output, borders included
        torch.testing.assert_close(model(x + 3.0), model(x), atol=2e-5, rtol=1e-5)
