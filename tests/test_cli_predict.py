"""``cardioseg predict`` and ``cardioseg models`` round trips through files."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cardioseg.cli import main
from napari_cardioseg.core import nets
from napari_cardioseg.core.io import read_single
from napari_cardioseg.core.predict import predict_probabilities, probabilities_to_labels
from napari_cardioseg.core.writes import write_tiff


def test_predict_round_trip(tmp_path, rng, user_model, capsys):
    model, card = user_model
    stack = rng.integers(0, 255, (2, 40, 52)).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", stack, (0.03, 0.005, 0.004))
    code = main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o",
                 str(tmp_path / "labels.tif"), "--prob", str(tmp_path / "prob.tif"),
                 "--tile", "32", "--overlap", "0.5", "--batch", "3", "--device", "cpu"])
    assert code == 0
    labels = read_single(tmp_path / "labels.tif")
    assert labels.data.dtype == np.uint8 and labels.scale == pytest.approx((0.03, 0.005, 0.004))
    prob = predict_probabilities(stack, model, card, device="cpu")  # random slices: not smoothed
    np.testing.assert_array_equal(labels.data, probabilities_to_labels(prob))
    for c, name in ((1, "mito"), (2, "lyso")):
        p = read_single(tmp_path / f"prob-{name}.tif")
        assert p.scale == pytest.approx((0.03, 0.005, 0.004))
        np.testing.assert_allclose(p.data, prob[c], atol=2e-5)
    assert "wrote" in capsys.readouterr().out


def test_predict_with_flips(tmp_path, rng, user_model):
    model, card = user_model
    image = rng.integers(0, 255, (40, 52)).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", image, (0.005, 0.005))
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o", str(tmp_path / "l.tif"),
                 "--prob", str(tmp_path / "p.tif"), "--flips", "--device", "cpu"]) == 0
    prob = predict_probabilities(image, model, card, device="cpu", flips=True)
    np.testing.assert_allclose(read_single(tmp_path / "p-mito.tif").data, prob[1], atol=2e-5)
    assert not np.allclose(prob, predict_probabilities(image, model, card, device="cpu"), atol=1e-3)


def test_models_lists_user_models(user_model, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tiny"))
    assert row.split()[:5] == ["tiny", "user", "unet2d", "mito,lyso", "0.005x0.005"]
    assert row.endswith("tiny.json")


def test_unknown_model_is_one_line_error(tmp_path, user_model, capsys):
    write_tiff(tmp_path / "in.tif", np.zeros((8, 8), np.uint8))
    code = main(["predict", str(tmp_path / "in.tif"), "--model", "nope", "-o",
                 str(tmp_path / "out.tif")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no model 'nope'" in err and "tiny" in err


def test_backends_agree_and_unknown_is_refused(tmp_path, rng, user_model, capsys):
    pytest.importorskip("onnxruntime")
    image = rng.integers(0, 255, (48, 56)).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", image, (0.005, 0.005))
    for backend in ("eager", "onnx"):
        assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o",
                     str(tmp_path / f"{backend}.tif"), "--prob", str(tmp_path / f"p{backend}.tif"),
                     "--device", "cpu", "--backend", backend]) == 0
    eager, onnx = (read_single(tmp_path / f"{b}.tif").data for b in ("eager", "onnx"))
    assert np.mean(eager == onnx) >= 0.999
    for name in ("mito", "lyso"):
        np.testing.assert_allclose(read_single(tmp_path / f"ponnx-{name}.tif").data,
                                   read_single(tmp_path / f"peager-{name}.tif").data, atol=1e-4)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o",
              str(tmp_path / "x.tif"), "--backend", "tensorrt"])
    assert exit_info.value.code == 2 and "invalid choice: 'tensorrt'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::ResourceWarning",  # bioimageio.spec leaves zip files open
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_predict_with_a_bioimageio_package(tmp_path, rng, user_model, monkeypatch):
    pytest.importorskip("bioimageio.spec")
    from napari_cardioseg.core.bioimageio_export import export_bioimageio
    from napari_cardioseg.core.bioimageio_import import REGISTRY

    for name, arch in REGISTRY.items():  # imported architectures for this test only
        monkeypatch.setitem(nets.ARCHITECTURES, name, arch)
    model, card = user_model
    package = export_bioimageio(model, card, tmp_path / "tiny.zip", test_size=32,
                                license="MIT", weight_formats=("torchscript", "onnx"))
    image = rng.integers(0, 255, (60, 72)).astype(np.uint8)
    write_tiff(tmp_path / "img.tif", image, (0.005, 0.005))
    assert main(["predict", str(tmp_path / "img.tif"), "--model", str(package), "-o",
                 str(tmp_path / "out.tif"), "--device", "cpu"]) == 0
    # the package declares no halo: compare with the original model cut into the same tiles
    ref = probabilities_to_labels(predict_probabilities(image, model, card, device="cpu", halo=0))
    np.testing.assert_array_equal(read_single(tmp_path / "out.tif").data, ref)


def test_missing_package_is_one_line_error(tmp_path, user_model, capsys):
    write_tiff(tmp_path / "img.tif", np.zeros((16, 16), np.uint8), (0.005, 0.005))
    code = main(["predict", str(tmp_path / "img.tif"), "--model", str(tmp_path / "nope.zip"),
                 "-o", str(tmp_path / "out.tif")])
    assert code == 2 and "no such bioimage.io package" in capsys.readouterr().err
