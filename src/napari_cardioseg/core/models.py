"""Model files: ``NAME.safetensors`` (weights) + ``NAME.json`` (card); pretrained and user models.

Loading never unpickles: weights are safetensors only, and the card records the SHA-256 of the
weights file, so a file changed after saving (or a card paired with other weights) is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from . import nets
from .errors import CardiosegError
from .normalize import check_normalization
from .sampling import MAX_CLASSES
from .writes import write_pair_atomic

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

FORMAT_VERSION = 1
MAX_IN_CHANNELS = 16
_SHA256 = re.compile(r"[0-9a-f]{64}")
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "weights"
_log = logging.getLogger(__name__)


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class ModelCard:
    """Everything needed to rebuild and use a model, stored as ``NAME.json``.

    Attributes
    ----------
    name : str
        Display name.
    spec : dict
        Architecture spec for :func:`nets.build_model` (``arch``, ``in_channels``, ``classes``).
    class_names : list of str
        One per class, ``class_names[0] == "background"``.
    normalization : dict
        Recipe for :func:`normalize.fit_normalization`.
    pixel_size : list of float or None
        µm per axis of the training data.
    weights_sha256 : str
        Hash of the weights file, filled in by :func:`save_model`.
    receptive_field : list of int or None
        Input pixels per axis one output pixel depends on (see :func:`nets.receptive_field`);
        None in older cards, where :meth:`receptive_field_px` computes it from the spec.
    """

    name: str
    spec: dict
    class_names: list[str]
    normalization: dict
    pixel_size: list[float] | None
    description: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    license: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION
    weights_sha256: str = ""
    receptive_field: list[int] | None = None

    def __post_init__(self) -> None:
        """Validate the card on construction."""
        self.validate()

    def validate(self) -> None:
        """Raise :class:`CardiosegError` on the first inconsistent field."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise CardiosegError("model card: 'name' must be a non-empty string")
        if not isinstance(self.format_version, int) or self.format_version > FORMAT_VERSION:
            raise CardiosegError(
                f"model card {self.name!r}: format_version {self.format_version!r} is newer than "
                f"this napari-cardioseg understands ({FORMAT_VERSION}); update the plugin"
            )
        _check_spec(self.spec, self.name)
        names = self.class_names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CardiosegError(f"model card {self.name!r}: class_names must be a list of strings")
        if len(names) != self.spec["classes"] or names[0] != "background":
            raise CardiosegError(
                f"model card {self.name!r}: class_names {names} must start with 'background' and "
                f"have spec['classes'] = {self.spec['classes']} entries"
            )
        try:
            check_normalization(self.normalization)
        except CardiosegError as exc:
            raise CardiosegError(f"model card {self.name!r}: {exc}") from exc
        if self.pixel_size is not None:
            ok = isinstance(self.pixel_size, list) and len(self.pixel_size) in (2, 3) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and v > 0 for v in self.pixel_size)
            if not ok:
                raise CardiosegError(
                    f"model card {self.name!r}: pixel_size must be null or 2-3 positive "
                    f"numbers (µm per axis), got {self.pixel_size!r}"
                )
        field_ = self.receptive_field
        if field_ is not None and not (
            isinstance(field_, list) and len(field_) == nets.spec_ndim(self.spec)
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in field_)
        ):
            raise CardiosegError(
                f"model card {self.name!r}: receptive_field must be null or one positive integer "
                f"per axis of the net, got {field_!r}"
            )
        for key in ("training", "metrics"):
            if not isinstance(getattr(self, key), dict):
                raise CardiosegError(f"model card {self.name!r}: {key!r} must be a JSON object")
        for key in ("description", "license", "created", "weights_sha256"):
            if not isinstance(getattr(self, key), str):
                raise CardiosegError(f"model card {self.name!r}: {key!r} must be a string")
        if self.weights_sha256 and not _SHA256.fullmatch(self.weights_sha256):
            raise CardiosegError(f"model card {self.name!r}: weights_sha256 must be 64 lowercase "
                                 f"hex digits, got {self.weights_sha256!r}")

    def receptive_field_px(self) -> tuple[int, ...]:
        """Return the stored receptive field, or the one computed from the spec for older cards."""
        if self.receptive_field is not None:
            return tuple(self.receptive_field)
        return nets.receptive_field(self.spec)

    def to_json(self) -> str:
        """Return the card as indented, strict JSON (NaN and infinities, e.g. failed metrics, become null)."""
        return json.dumps(_strict(dataclasses.asdict(self)), indent=2, ensure_ascii=False,
                          allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse and validate a card; unknown keys are an error (typos would go unnoticed)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CardiosegError(f"model card is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise CardiosegError("model card must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CardiosegError(f"model card has unknown fields: {', '.join(unknown)}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise CardiosegError(f"model card lacks required fields: {', '.join(missing)}")
        return cls(**data)


def _check_spec(spec: Any, name: str) -> None:
    """Validate an architecture spec fully, sizes included, without building anything."""
    try:
        nets.architecture(spec)
    except CardiosegError as exc:
        raise CardiosegError(f"model card {name!r}: {exc}") from exc

    def integer(key: str, low: int, high: int, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CardiosegError(f"model card {name!r}: spec {key!r} must be an integer in "
                                 f"{low}..{high}, got {value!r}")

    integer("classes", 2, MAX_CLASSES, spec["classes"])
    integer("in_channels", 1, MAX_IN_CHANNELS, spec["in_channels"])
    arch = spec["arch"]
    try:  # the size options' bounds live in the registry rows (checked before any net is built)
        nets.check_options(spec)
    except CardiosegError as exc:
        raise CardiosegError(f"model card {name!r}: {exc}") from exc
    if arch == "highres3dzm" and "channels" in spec:
        widths = spec["channels"]
        if not isinstance(widths, list) or len(widths) != 3:
            raise CardiosegError(f"model card {name!r}: spec 'channels' must be a list of 3 "
                                 f"widths, got {widths!r}")


@dataclass
class ModelEntry:
    """One model found by :func:`list_models`."""

    name: str
    path: Path  # the .json card
    source: str  # "pretrained" or "user"
    card: ModelCard


def user_models_dir(create: bool = False) -> Path:
    """Return the folder of user models (made only when ``create``).

    ``$CARDIOSEG_MODELS_DIR`` when set (point it at any folder of saved models to list them),
    else ``$CARDIOSEG_HOME/models``, else ``~/.cardioseg/models``.
    """
    home = os.environ.get("CARDIOSEG_HOME")
    path = (Path(home) if home else Path.home() / ".cardioseg") / "models"
    path = Path(os.environ.get("CARDIOSEG_MODELS_DIR") or path).expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def suggested_name(name: str, day: datetime | None = None) -> str:
    """``NAME-finetuned-YYYYMMDD`` for a pretrained model's name, else ``name`` itself."""
    if not (PRETRAINED_DIR / f"{name}.json").is_file():
        return name
    return f"{name}-finetuned-{(day or datetime.now(UTC)).strftime('%Y%m%d')}"


def check_save_name(path: str | os.PathLike) -> None:
    """Refuse to save a model under a pretrained model's name (it would hide or be hidden by it).

    Also refuses a name that ends in a model file's suffix once that is taken off
    (``NAME.json.json``), which would save under another name than the one checked.
    """
    name = _stem(path).name
    if name.endswith((".json", ".safetensors")):
        raise CardiosegError(f"{Path(path).name!r}: give the model's file name with one suffix "
                             f"({name})")
    if suggested_name(name) != name:
        raise CardiosegError(
            f"{name!r} is the name of a pretrained model; save under another name, "
            f"e.g. {suggested_name(name)}"
        )


def _stem(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def model_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(STEM.json, STEM.safetensors)`` for ``STEM``, ``STEM.json`` or ``STEM.safetensors``.

    A dot inside the stem is kept (``model.v2`` → ``model.v2.json``).
    """
    stem = _stem(path)
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


def save_model(model: torch.nn.Module, card: ModelCard, path: str | os.PathLike, *,
               fp16: bool = False) -> Path:
    """Write ``STEM.safetensors`` and ``STEM.json`` atomically; returns the ``.json`` path.

    Parameters
    ----------
    model : torch.nn.Module
        A model built from ``card.spec``.
    card : ModelCard
        Its card; ``weights_sha256`` (and ``created`` if empty) are filled in.
    path : path-like
        ``STEM``, ``STEM.json`` or ``STEM.safetensors``.
    fp16 : bool
        Store floating-point weights as float16 (half the size; loaded back as float32).
    """
    from safetensors.torch import save as st_save

    stem = _stem(path)
    card.validate()
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if fp16 and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous().clone()
    payload = st_save(tensors, metadata={"format": "pt", "arch": card.spec["arch"]})
    card.weights_sha256 = hashlib.sha256(payload).hexdigest()  # every written card has one
    card.created = card.created or datetime.now(UTC).isoformat(timespec="seconds")
    card_path, weights_path = model_files(stem)
    write_pair_atomic((card_path, card.to_json().encode("utf-8")), (weights_path, payload))
    return card_path


def resolved_model_files(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    """Return the files of a model given by name or path, where loading it would find them.

    Unresolvable names give the files the text names (loading reports the missing model).
    """
    if is_bioimageio_package(name_or_path):
        return Path(name_or_path), Path(name_or_path)
    try:
        return model_files(_resolve(name_or_path))
    except CardiosegError:
        return model_files(name_or_path)


def _resolve(name_or_path: str | os.PathLike) -> Path:
    """Return the stem of a model given by name (pretrained, then user) or by path."""
    text = str(name_or_path)
    if Path(text).name in ("", ".", "..") or not text.strip():
        raise CardiosegError(f"{text!r} is not a model name or a model file (NAME.json)")
    candidates = [_stem(text)]
    if os.sep not in text and "/" not in text and not text.endswith((".json", ".safetensors")):
        candidates = [PRETRAINED_DIR / text, user_models_dir() / text, *candidates]
    for stem in candidates:
        if model_files(stem)[0].is_file():
            return stem
    names = sorted({e.name for e in list_models()})
    raise CardiosegError(
        f"no model {text!r} (need NAME.json + NAME.safetensors); available: "
        f"{', '.join(names) or 'none yet'}"
    )


def read_card(path: str | os.PathLike) -> ModelCard:
    """Read and validate ``STEM.json``."""
    path = model_files(path)[0]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardiosegError(f"{path}: cannot read the model card ({exc})") from exc
    try:
        return ModelCard.from_json(text)
    except CardiosegError as exc:
        raise CardiosegError(f"{path}: {exc}") from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CardiosegError(f"{path}: invalid model card ({type(exc).__name__}: {exc})") from exc


def _checked_files(stem: Path) -> tuple[ModelCard, Path, bytes]:
    """Return the card, weights path and weights bytes of ``stem``, checked against the card."""
    card = read_card(stem)
    card_path, weights = model_files(stem)
    try:
        payload = weights.read_bytes()
    except OSError as exc:
        raise CardiosegError(f"{weights}: cannot read the weights ({exc.strerror or exc})") from exc
    if not card.weights_sha256:
        message = (f"{card_path}: the card has no weights_sha256, so its weights "
                   "cannot be checked for changes; re-save the model to record one")
        _log.warning(message)
        warnings.warn(message, UserWarning, stacklevel=4)  # load_model's caller
    elif hashlib.sha256(payload).hexdigest() != card.weights_sha256:
        raise CardiosegError(
            f"{weights}: the weights do not match their card (changed or replaced after saving)"
        )
    return card, weights, payload


def is_bioimageio_package(name_or_path: str | os.PathLike) -> bool:
    """Tell whether ``name_or_path`` is a bioimage.io package (``.zip``, ``rdf.yaml`` or folder).

    A ``.zip`` that is not one is an error: nothing else of ours ends in ``.zip``.
    """
    text = str(name_or_path).lower()
    if not (text.endswith((".zip", ".yaml")) or Path(name_or_path).is_dir()):
        return False
    from .bioimageio_import import is_bioimageio

    if is_bioimageio(name_or_path):
        return True
    if text.endswith(".zip"):
        raise CardiosegError(f"{name_or_path}: no such bioimage.io package (.zip)")
    return False


def checked_model(
    name_or_path: str | os.PathLike,
) -> tuple[ModelCard, Callable[[], torch.nn.Module]]:
    """Return a saved model's card, its weights read and checked, and a function building the net.

    The build uses the weights already read (safetensors only; nothing is unpickled), so a caller
    that finds the model's graph in the ONNX cache can skip it (:func:`.backends.cached_runner`).
    Not for bioimage.io packages (see :func:`load_model`).
    """
    from safetensors.torch import load as st_load

    card, weights, payload = _checked_files(_resolve(name_or_path))

    def build() -> torch.nn.Module:
        try:
            state = st_load(payload)
        except (SafetensorError, ValueError, OSError) as exc:
            raise CardiosegError(f"{weights}: not a valid safetensors file ({exc})") from exc
        model = nets.build_model(card.spec)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CardiosegError(
                f"{weights}: weights do not fit architecture {card.spec['arch']!r} of the card ({first})"
            ) from exc
        return model.eval()
    return card, build


def load_model(name_or_path: str | os.PathLike,
               device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelCard]:
    """Rebuild a model from its card and weights (safetensors only; nothing is unpickled).

    A bioimage.io package (``.zip``, ``rdf.yaml`` or its folder) is loaded through
    :func:`bioimageio_import.load_bioimageio`.

    Raises
    ------
    CardiosegError
        Unknown name, missing or unreadable files, weights changed since saving, or weights that
        do not fit the card's architecture.
    """
    if is_bioimageio_package(name_or_path):
        from .bioimageio_import import load_bioimageio

        return load_bioimageio(name_or_path, device=device)
    card, build = checked_model(name_or_path)
    return build().to(device), card


def _scan_models() -> tuple[list[ModelEntry], list[tuple[Path, str]]]:
    """Return the valid models and ``(card path, reason)`` for every broken card."""
    entries, broken = [], []
    for source, folder in (("pretrained", PRETRAINED_DIR), ("user", user_models_dir())):
        try:
            cards = sorted(folder.glob("*.json")) if folder.is_dir() else []
        except OSError as exc:
            broken.append((folder, f"cannot list the folder ({exc.strerror or exc})"))
            continue
        for card_path in cards:
            if not card_path.with_suffix(".safetensors").is_file():
                broken.append((card_path, "no weights file (NAME.safetensors) beside the card"))
                continue
            try:
                card = read_card(card_path)
            except CardiosegError as exc:
                broken.append((card_path, str(exc).removeprefix(f"{card_path}: ")))
                continue
            entries.append(ModelEntry(card_path.stem, card_path, source, card))
    return entries, broken


def list_models() -> list[ModelEntry]:
    """Pretrained models (package ``weights/``) then user models, sorted by name.

    Cards that fail validation or lack their weights are left out (see :func:`broken_models`).
    """
    entries, broken = _scan_models()
    for path, reason in broken:
        _log.info("skipping %s: %s", path, reason)
    return entries


def broken_models() -> list[tuple[Path, str]]:
    """``(card path, reason)`` for every card that cannot be used (invalid, or no weights)."""
    return _scan_models()[1]
