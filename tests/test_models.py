"""Model files: safetensors + JSON card round trips, validation, tamper detection, the catalogue."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import napari_cardioseg
from napari_cardioseg.core import models, nets
from napari_cardioseg.core.errors import CardiosegError

SPEC = {"arch": "unet2d", "in_channels": 1, "classes": 3, "depth": 2, "base": 4}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def make_card(**changes) -> models.ModelCard:
    fields = {"name": "tiny", "spec": dict(SPEC), "class_names": ["background", "mito", "lyso"],
              "normalization": {"method": "percentile", "low": 1.0, "high": 99.0},
              "pixel_size": [0.01, 0.005, 0.005], "metrics": {"dice": 0.5}}
    return models.ModelCard(**{**fields, **changes})


def trained_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = nets.build_model(SPEC)
    with torch.no_grad():  # non-default BN statistics, so a lost buffer would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_round_trip_identical_outputs(tmp_path):
    model = trained_model()
    path = models.save_model(model, make_card(), tmp_path / "tiny.safetensors")
    assert path == tmp_path / "tiny.json"
    assert (tmp_path / "tiny.safetensors").is_file()
    loaded, card = models.load_model(tmp_path / "tiny")
    assert card == models.read_card(path) and card.metrics == {"dice": 0.5}
    assert len(card.weights_sha256) == 64 and card.created
    assert not loaded.training
    x = torch.randn(2, 1, 20, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert json.loads(path.read_text())["spec"] == SPEC


@pytest.mark.parametrize("failing", [".json", ".safetensors"])
def test_a_failed_save_keeps_the_old_pair_and_leaves_nothing(tmp_path, monkeypatch, failing):
    """Disk full while the card or the weights are written: the model saved before still loads
    (never a new card beside old weights, or new weights beside an old card), and no file is
    left behind (no orphan weights of a model that was never saved)."""
    import errno

    old = models.save_model(trained_model(), make_card(), tmp_path / "m")
    files = sorted(p.name for p in tmp_path.iterdir())
    real = Path.write_bytes

    def full_disk(self, data):
        if failing in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    model = trained_model()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(CardiosegError, match="No space left"):
        models.save_model(model, make_card(name="m"), tmp_path / "m")
    with pytest.raises(CardiosegError, match="No space left"):
        models.save_model(model, make_card(name="fresh"), tmp_path / "fresh")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    loaded, card = models.load_model(old)
    assert card.weights_sha256 == models.read_card(old).weights_sha256
    assert torch.equal(next(loaded.parameters()), next(trained_model().parameters()))


def test_fp16_halves_the_file_and_stays_close(tmp_path):
    model = trained_model()
    models.save_model(model, make_card(), tmp_path / "full")
    models.save_model(model, make_card(), tmp_path / "half", fp16=True)
    full = (tmp_path / "full.safetensors").stat().st_size
    half = (tmp_path / "half.safetensors").stat().st_size
    assert half < 0.6 * full
    loaded, _ = models.load_model(tmp_path / "half.json")
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=1e-2)


def test_tampered_weights_are_refused(tmp_path):
    models.save_model(trained_model(), make_card(), tmp_path / "tiny")
    weights = tmp_path / "tiny.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # flip bits of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(CardiosegError, match="do not match their card"):
        models.load_model(tmp_path / "tiny")


def test_corrupt_safetensors_is_refused(tmp_path):
    models.save_model(trained_model(), make_card(weights_sha256=""), tmp_path / "tiny")
    card = json.loads((tmp_path / "tiny.json").read_text())
    card["weights_sha256"] = ""  # hand-edited card without the hash
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    (tmp_path / "tiny.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.warns(UserWarning, match="no weights_sha256"), \
            pytest.raises(CardiosegError, match="not a valid safetensors"):
        models.load_model(tmp_path / "tiny")


def test_card_for_another_architecture_is_refused(tmp_path):
    models.save_model(trained_model(), make_card(), tmp_path / "tiny")
    card = json.loads((tmp_path / "tiny.json").read_text())
    card["spec"]["depth"] = 3  # same arch name, different shapes
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    with pytest.raises(CardiosegError, match="do not fit architecture 'unet2d'"):
        models.load_model(tmp_path / "tiny")


@pytest.mark.parametrize(("changes", "message"), [
    ({"class_names": ["mito", "background", "x"]}, "must start with 'background'"),
    ({"class_names": ["background", "mito"]}, "spec\\['classes'\\] = 3"),
    ({"pixel_size": [0.0, 1.0]}, "pixel_size"),
    ({"normalization": {"method": "magic"}}, "normalisation method"),
    ({"spec": {"arch": "nope", "in_channels": 1, "classes": 3}}, "unknown architecture"),
    ({"format_version": 99}, "newer"),
    ({"name": ""}, "name"),
])
def test_card_validation(changes, message):
    with pytest.raises(CardiosegError, match=message):
        make_card(**changes)


def test_card_json_errors():
    text = make_card().to_json()
    assert models.ModelCard.from_json(text) == make_card()
    with pytest.raises(CardiosegError, match="unknown fields: colour"):
        models.ModelCard.from_json(json.dumps({**json.loads(text), "colour": "red"}))
    with pytest.raises(CardiosegError, match="lacks required fields: spec"):
        models.ModelCard.from_json(json.dumps({k: v for k, v in json.loads(text).items()
                                               if k != "spec"}))
    with pytest.raises(CardiosegError, match="not valid JSON"):
        models.ModelCard.from_json("{")


def test_user_models_are_listed_and_loaded_by_name(home):
    assert not home.exists()
    assert models.user_models_dir() == home / "models" and not home.exists()
    folder = models.user_models_dir(create=True)
    models.save_model(trained_model(), make_card(name="Mine"), folder / "mine")
    (folder / "broken.json").write_text("{")  # skipped: invalid card, no weights
    (folder / "broken.safetensors").write_bytes(b"")
    users = [e for e in models.list_models() if e.source == "user"]
    assert [(e.name, e.card.name, e.path) for e in users] == [("mine", "Mine", folder / "mine.json")]
    model, card = models.load_model("mine")
    assert card.name == "Mine" and isinstance(model, torch.nn.Module)
    with pytest.raises(CardiosegError, match=r"no model 'other'.*available: .*mine"):
        models.load_model("other")


def test_pretrained_dir_is_the_package_weights():
    assert models.PRETRAINED_DIR == Path(napari_cardioseg.__file__).parent / "weights"


def test_no_pickle_anywhere_in_the_package():
    source = Path(napari_cardioseg.__file__).parent
    pattern = re.compile(r"torch\.load\(|import pickle|pickle\.load|weights_only\s*=\s*False")
    offenders = [str(p) for p in source.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_card_json_is_strict_when_metrics_are_nan():
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2}
    metrics = {"dice": float("nan"), "per_tile": [1.0, float("inf")]}
    card = models.ModelCard("m", spec, ["background", "x"], {"method": "minmax"}, None, metrics=metrics)

    def refuse(name):
        raise ValueError(name)

    data = json.loads(card.to_json(), parse_constant=refuse)
    assert data["metrics"] == {"dice": None, "per_tile": [1.0, None]}


def test_receptive_field_is_stored_and_old_cards_compute_it(tmp_path):
    measured = nets.receptive_field(SPEC)
    assert make_card().receptive_field is None  # an older card: no field
    assert make_card().receptive_field_px() == measured
    stored = make_card(receptive_field=list(measured))
    path = models.save_model(trained_model(), stored, tmp_path / "rf")
    assert json.loads(path.read_text())["receptive_field"] == list(measured)
    assert models.read_card(path).receptive_field_px() == measured
    old = json.loads(path.read_text())
    del old["receptive_field"]
    assert models.ModelCard.from_json(json.dumps(old)).receptive_field_px() == measured
    for bad in ([0, 5], [5], [5.0, 5.0], "44"):
        with pytest.raises(CardiosegError, match="receptive_field must be null or one positive"):
            make_card(receptive_field=bad)


@pytest.mark.parametrize(("changes", "message"), [
    ({"normalization": {"method": "percentile", "low": None}}, "'low' must be a finite number"),
    ({"normalization": {"method": "fixed", "min": "0", "max": 1}}, "'min' must be a finite number"),
    ({"spec": {**SPEC, "depth": 40}}, "'depth' must be an integer in 1..6"),
    ({"spec": {**SPEC, "base": 10**6}}, "'base' must be an integer in 1..128"),
    ({"spec": {**SPEC, "depth": "2"}}, "'depth' must be an integer"),
    ({"spec": {**SPEC, "classes": 300}, "class_names": ["background"] * 300}, "2..256"),
    ({"spec": {**SPEC, "in_channels": 10**9}}, "'in_channels' must be an integer in 1..16"),
    ({"spec": {"arch": "highres3dzm", "in_channels": 1, "classes": 3, "channels": [16, 10**5, 8]}},
     "'channels' must be an integer in 1..256"),
    ({"spec": {"arch": "unet-vgg11", "in_channels": 1, "classes": 3, "encoder_depth": 9}},
     "'encoder_depth' must be an integer in 3..5"),
    ({"pixel_size": [float("nan"), 1.0]}, "pixel_size"),
    ({"pixel_size": [True, 1.0]}, "pixel_size"),
    ({"weights_sha256": "abc"}, "64 lowercase hex"),
    ({"description": 5}, "'description' must be a string"),
])
def test_malformed_cards_are_refused_before_building(changes, message, monkeypatch):
    def no_build(spec):
        raise AssertionError("a network was built")
    monkeypatch.setattr(nets, "build_model", no_build)
    with pytest.raises(CardiosegError, match=message):
        make_card(**changes)


def write_card_json(folder: Path, name: str, **changes) -> None:
    """A saved model whose JSON card is then edited by hand."""
    models.save_model(trained_model(), make_card(name=name), folder / name)
    card = json.loads((folder / f"{name}.json").read_text())
    for key, value in changes.items():
        card[key] = {**card[key], **value} if isinstance(value, dict) else value
    (folder / f"{name}.json").write_text(json.dumps(card))


def test_broken_user_cards_are_listed_as_broken_and_never_break_the_list(home):
    folder = models.user_models_dir(create=True)
    models.save_model(trained_model(), make_card(name="good"), folder / "good")
    write_card_json(folder, "nulllow", normalization={"low": None})
    write_card_json(folder, "deep", spec={"depth": 40})
    (folder / "orphan.json").write_text(make_card().to_json())  # no weights
    names = [e.name for e in models.list_models() if e.source == "user"]
    assert names == ["good"]
    broken = {p.name: reason for p, reason in models.broken_models()}
    assert set(broken) == {"nulllow.json", "deep.json", "orphan.json"}
    assert "'low' must be a finite number" in broken["nulllow.json"]
    assert "'depth' must be an integer in 1..6, got 40" in broken["deep.json"]
    assert "no weights" in broken["orphan.json"]
    with pytest.raises(CardiosegError, match=r"no model 'other'.*available: .*good"):
        models.load_model("other")
    with pytest.raises(CardiosegError, match=r"'depth' must be an integer in 1..6"):
        models.load_model("deep")


@pytest.mark.parametrize("name", ["", ".", "..", "  "])
def test_empty_or_folder_model_names_are_clear_errors(name):
    with pytest.raises(CardiosegError, match="not a model name"):
        models.load_model(name)


def test_every_written_card_records_the_weights_hash(tmp_path):
    path = models.save_model(trained_model(), make_card(weights_sha256=""), tmp_path / "m")
    digest = json.loads(path.read_text())["weights_sha256"]
    assert re.fullmatch("[0-9a-f]{64}", digest)
    for card in models.PRETRAINED_DIR.glob("*.json"):
        assert re.fullmatch("[0-9a-f]{64}", json.loads(card.read_text())["weights_sha256"])


def test_loading_a_card_without_hash_warns_loudly(tmp_path):
    models.save_model(trained_model(), make_card(), tmp_path / "m")
    card = json.loads((tmp_path / "m.json").read_text())
    card["weights_sha256"] = ""
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.warns(UserWarning, match="no weights_sha256, so its weights cannot be checked"):
        model, _ = models.load_model(tmp_path / "m")
    assert isinstance(model, torch.nn.Module)
