"""bioimage.io export: standalone architecture file, offline ``test_model`` for every weight format."""

from __future__ import annotations

import gc
import warnings
import zipfile

import numpy as np
import pytest
import torch

from napari_cardioseg.cli import main
from napari_cardioseg.core import nets
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard, save_model

# bioimageio.spec / bioimageio.core leave files open; they are closed (with a ResourceWarning)
# whenever they happen to be collected, so collect them at the end of each test of this module
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning",
                                        "ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_open_files():
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


SPEC = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}


def tiny(license: str = "MIT") -> tuple[torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    model = nets.build_model(SPEC).eval()
    for module in model.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    card = ModelCard(name="tiny-test", spec=dict(SPEC), class_names=["background", "thing"],
                     normalization={"method": "percentile", "low": 1.0, "high": 99.8},
                     pixel_size=[0.1, 0.1], license=license, metrics={"val_dice": 0.5},
                     training={"data": [{"name": "noise", "used": "all"}]})
    return model, card


def bioimageio_test(path, fmt: str):
    """``bioimageio.core.test_model``; its unclosed files are collected here, not in later tests."""
    from bioimageio.core import test_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        summary = test_model(path, weight_format=fmt)
        gc.collect()
    return summary


def test_architecture_file_runs_without_the_plugin():
    from napari_cardioseg.core.bioimageio_export import architecture_source

    source = architecture_source()
    assert "from napari_cardioseg" not in source and "import napari_cardioseg" not in source
    namespace: dict = {"__name__": "cardioseg_arch"}
    exec(compile(source, "cardioseg_arch.py", "exec"), namespace)
    model, _ = tiny()
    rebuilt = namespace["build"](**SPEC)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))


def test_licence_comes_from_the_card_or_is_required():
    from napari_cardioseg.core.bioimageio_export import spdx_license

    assert spdx_license(tiny("weights BSD-3-Clause; data research use")[1]) == "BSD-3-Clause"
    assert spdx_license(tiny("")[1], "CC-BY-4.0") == "CC-BY-4.0"
    with pytest.raises(CardiosegError, match="--license"):
        spdx_license(tiny("see the data terms")[1])


def test_readme_has_validation_section():
    from napari_cardioseg.core.bioimageio_export import citations, readme

    _, card = tiny()
    text = readme(card, citations(card), "MIT")
    validation = text.split("## Validation", 1)[1]
    assert "| val_dice | 0.5 |" in validation and "noise; used: all" in validation
    assert "doi:10.1007/978-3-319-24574-4_28" in text  # U-Net


def test_export_passes_bioimageio_test_for_every_weight_format(tmp_path):
    pytest.importorskip("bioimageio.core")
    pytest.importorskip("onnxruntime")
    from napari_cardioseg.core.bioimageio_export import export_bioimageio

    model, card = tiny()
    rng = np.random.default_rng(1)
    image = (rng.gamma(2.0, 30.0, (80, 72)) + 10).astype(np.float32)
    path = export_bioimageio(model, card, tmp_path / "tiny.zip", test_image=image, test_size=64)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"rdf.yaml", "README.md", "cover.png", "test_input.npy", "test_output.npy", "weights.pt",
            "weights.torchscript.pt", "weights.onnx", "cardioseg_arch.py"} <= names
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        summary = bioimageio_test(path, fmt)
        reproduced = [d for d in summary.details if d.name.startswith("Reproduce test outputs")]
        assert summary.status == "passed", (fmt, [(d.name, d.errors) for d in summary.details])
        assert reproduced and reproduced[0].status == "passed", fmt


def test_cli_export_writes_a_package(tmp_path, monkeypatch, capsys):
    pytest.importorskip("bioimageio.spec")
    pytest.importorskip("onnx")
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    model, card = tiny()
    save_model(model, card, tmp_path / "tiny")
    out = tmp_path / "tiny.zip"
    assert main(["export", str(tmp_path / "tiny.json"), "-o", str(out), "--formats", "onnx",
                 "--test-size", "32"]) == 0
    with zipfile.ZipFile(out) as zf:
        inp = np.load(zf.open("test_input.npy"))
        prob = np.load(zf.open("test_output.npy"))
        assert "weights.pt" not in zf.namelist()
    assert inp.shape == (1, 1, 32, 32) and prob.shape == (1, 2, 32, 32)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)
    assert main(["export", str(tmp_path / "tiny.json"), "-o", str(tmp_path / "x.tar")]) == 2
    assert "error: " in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zdisk-fluo", "mito-em"])
def test_shipped_models_export_and_pass_bioimageio_test(tmp_path, name):
    pytest.importorskip("bioimageio.core")
    pytest.importorskip("onnxruntime")
    from napari_cardioseg.core.bioimageio_export import default_test_image, export_bioimageio
    from napari_cardioseg.core.models import load_model

    model, card = load_model(name)
    path = export_bioimageio(model, card, tmp_path / f"{name}.zip", test_image=default_test_image(card))
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        summary = bioimageio_test(path, fmt)
        assert summary.status == "passed", (name, fmt, [(d.name, d.errors) for d in summary.details])


@pytest.mark.parametrize("norm", [{"method": "percentile", "low": 1.0, "high": 99.8, "invert": True},
                                  {"method": "zscore", "invert": True},
                                  {"method": "fixed", "min": -200.0, "max": -10.0, "invert": True}])
def test_inverting_normalisation_exports_as_the_same_map(tmp_path, norm):
    pytest.importorskip("bioimageio.core")
    pytest.importorskip("onnxruntime")
    import dataclasses

    from napari_cardioseg.core.bioimageio_export import export_bioimageio

    model, card = tiny()
    card = dataclasses.replace(card, normalization=norm)
    image = (np.random.default_rng(2).gamma(2.0, 30.0, (64, 64)) + 10).astype(np.float32)
    path = export_bioimageio(model, card, tmp_path / "inv.zip", test_image=image, test_size=64,
                             weight_formats=("onnx",))
    summary = bioimageio_test(path, "onnx")  # bioimage.io's preprocessing vs our normalisation
    reproduced = [d for d in summary.details if d.name.startswith("Reproduce test outputs")]
    assert summary.status == "passed", [(d.name, d.errors) for d in summary.details]
    assert reproduced and reproduced[0].status == "passed"


@pytest.mark.parametrize("size", ["-5", "5000", "abc"])
def test_cli_export_refuses_an_absurd_test_size(tmp_path, capsys, size):
    from napari_cardioseg.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["export", "mito-em", "-o", str(tmp_path / "m.zip"), "--test-size", size])
    assert exit_.value.code == 2 and "--test-size" in capsys.readouterr().err
    assert not (tmp_path / "m.zip").exists()
