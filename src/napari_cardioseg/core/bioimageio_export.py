"""Export a napari-cardioseg model as a bioimage.io model package (spec 0.5, one ``.zip``).

The package runs without this plugin (ilastik, deepImageJ, BiaPy, bioimageio.core): it holds
``pytorch_state_dict`` weights with a self-contained architecture file, ``torchscript`` and
``onnx`` weights, a test input and its expected output, a README with a *Validation* section
from the card, a cover image and citations. Needs the ``[bioimageio]`` extra (bioimageio.spec,
onnx); weights in ``pytorch_state_dict`` format are written with ``torch.save`` because the
bioimage.io format requires it (napari-cardioseg itself never unpickles).

The card's normalisation maps onto bioimage.io preprocessing: ``percentile`` → ``scale_range``
(per sample), ``minmax`` → ``scale_range`` 0-100 %, ``zscore`` → ``zero_mean_unit_variance``,
``fixed`` → ``scale_linear``. The output is the softmax of the logits over the channel axis
(one probability per class); taking the argmax is the consumer's job.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import bioimageio_arch
from .errors import CardiosegError
from .models import ModelCard
from .nets import size_multiple, smp2d, spec_ndim
from .nets import unet as unet_module
from .normalize import apply_normalization, fit_normalization, inverted
from .progress import Progress
from .writes import atomic_path

#: SPDX identifiers recognised in a card's free-text ``license``
KNOWN_LICENSES = ("BSD-3-Clause", "BSD-2-Clause", "MIT", "Apache-2.0", "CC-BY-4.0", "CC0-1.0",
                  "CC-BY-NC-4.0", "GPL-3.0-only")
#: architectures whose ``pytorch_state_dict`` can be rebuilt by ``cardioseg_arch.py``
STATE_DICT_ARCHS = ("unet2d", "unet3d", *bioimageio_arch.SMP_NETS)
ARCH_FILE = "cardioseg_arch.py"

#: references every package cites (architecture); more come from the card's arch and data
_CITE_UNET = ("Ronneberger, Fischer & Brox (2015) U-Net: convolutional networks for biomedical "
              "image segmentation. MICCAI.", "10.1007/978-3-319-24574-4_28")
_CITE_3D = ("Çiçek, Abdulkadir, Lienkamp, Brox & Ronneberger (2016) 3D U-Net: learning dense "
            "volumetric segmentation from sparse annotation. MICCAI.", "10.1007/978-3-319-46723-8_49")
_CITE_MITO = [
    ("Khadangi, Boudier, Hanssen & Rajagopal (2022) CardioVinci: building blocks for virtual "
     "cardiac cells using deep learning. Phil. Trans. R. Soc. B 377: 20210469.",
     "10.1098/rstb.2021.0469"),
    ("Khadangi, Boudier & Rajagopal (2020) EM-net: deep learning for electron microscopy image "
     "segmentation. bioRxiv.", "10.1101/2020.02.03.933127"),
]


def _require_spec() -> Any:
    try:
        from bioimageio.spec.model import v0_5
    except ImportError as exc:
        raise CardiosegError(
            "bioimage.io export needs the optional extra: pip install 'napari-cardioseg[bioimageio]'"
        ) from exc
    return v0_5


def spdx_license(card: ModelCard, override: str | None = None) -> str:
    """Return the SPDX licence id to declare: ``override``, else the first known id in ``card.license``."""
    if override:
        return override
    for spdx in KNOWN_LICENSES:
        if re.search(rf"(?<![\w-]){re.escape(spdx)}(?![\w-])", card.license or ""):
            return spdx
    raise CardiosegError(
        f"model {card.name!r}: its card names no licence this exporter recognises "
        f"({card.license!r}); pass one, e.g. --license BSD-3-Clause"
    )


def architecture_source() -> str:
    """Text of ``cardioseg_arch.py``: :mod:`bioimageio_arch` with our U-Net inlined."""
    template = inspect.getsource(bioimageio_arch)
    unet = inspect.getsource(unet_module)
    constants = (f"#: registry name -> (smp architecture, encoder)\nSMP_NETS = {smp2d.SMP_NETS!r}\n"
                 f"DECODER_CHANNELS = {smp2d.DECODER_CHANNELS!r}")
    lines = [constants if line.endswith("  # cardioseg-export: constants") else line
             for line in template.splitlines() if not line.endswith("  # cardioseg-export: inline")]
    body = "\n".join(lines)
    doc_end = body.index('"""', 3) + 3  # keep the template's docstring first
    return body[:doc_end] + "\n\n" + unet.split('"""', 2)[2].lstrip("\n") + body[doc_end:] + "\n"


def _preprocessing(v0_5: Any, card: ModelCard, axes: list[str]) -> list:
    """Return the card's normalisation as bioimage.io steps.

    An inverting recipe normalises the image as it is and flips the result: percentiles ``p, q``
    of ``-x`` are ``-P(100 - q), -P(100 - p)`` of ``x``, so ``scale_range`` with the mirrored
    percentiles, then ``1 - t`` (``-t`` after ``zero_mean_unit_variance``), is the same map.
    """
    norm = card.normalization
    method = norm["method"]
    invert = inverted(norm)
    axis_ids = [v0_5.AxisId(a) for a in axes]
    flip: list = []
    if method in ("percentile", "minmax"):
        low, high = (float(norm.get("low", 1.0)), float(norm.get("high", 99.8))) \
            if method == "percentile" else (0.0, 100.0)
        if invert:
            low, high = 100.0 - high, 100.0 - low
            flip = [v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearKwargs(gain=-1.0, offset=1.0))]
        op = v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
            axes=axis_ids, min_percentile=low, max_percentile=high))
    elif method == "zscore":
        op = v0_5.ZeroMeanUnitVarianceDescr(kwargs=v0_5.ZeroMeanUnitVarianceKwargs(axes=axis_ids))
        if invert:
            flip = [v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearKwargs(gain=-1.0, offset=0.0))]
    else:  # fixed: (±x - low) / (high - low), one linear map
        low, high = float(norm["min"]), float(norm["max"])
        gain = 1.0 / (high - low)
        op = v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearKwargs(
            gain=-gain if invert else gain, offset=-low * gain))
    return [v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")), op, *flip]


def _cover(image: np.ndarray, prob: np.ndarray, path: Path, title: str) -> None:
    """Input and its prediction overlaid (foreground classes coloured), 2:1 PNG."""
    from matplotlib.figure import Figure  # renders with Agg; the process's backend is left alone

    labels = np.argmax(prob, axis=0)
    fig = Figure(figsize=(8, 4), dpi=100)
    for k, (ax, overlay) in enumerate(zip(fig.subplots(1, 2), (False, True), strict=True)):
        ax.imshow(image, cmap="gray", interpolation="nearest")
        if overlay:
            shown = np.ma.masked_equal(labels, 0)
            ax.imshow(shown, cmap="autumn", alpha=0.45, interpolation="nearest",
                      vmin=1, vmax=max(1, prob.shape[0] - 1))
        ax.set_title(title if k == 0 else "prediction", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


def readme(card: ModelCard, citations: list[tuple[str, str]], lic: str) -> str:
    """Package documentation: description, usage, *Validation* (card metrics and data), citations."""
    ndim = spec_ndim(card.spec)
    norm = card.normalization
    lines = [f"# {card.name}", "", card.description or "Semantic segmentation model.", "",
             "Exported from napari-cardioseg. Input: one greyscale channel, axes "
             f"{'(batch, channel, y, x)' if ndim == 2 else '(batch, channel, z, y, x)'}; "
             f"stacks are processed {'slice by slice' if ndim == 2 else 'as volumes'}. "
             f"Spatial sizes must be multiples of {size_multiple(card.spec)}.",
             f"Output: softmax probabilities, one channel per class ({', '.join(card.class_names)}); "
             "the argmax over channels gives labels (0 = background).", "",
             f"Normalisation: `{norm}` (napari-cardioseg fits it once on the whole image; the "
             "bioimage.io preprocessing fits it per sample).", ""]
    if card.pixel_size:
        lines += [f"Pixel size of the training data: {card.pixel_size} µm per axis "
                  "(resample images far from it).", ""]
    lines += ["## Validation", "", "Metrics recorded in the model card:", "",
              "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_format_value(value)} |" for key, value in card.metrics.items()]
    if not card.metrics:
        lines.append("| (none recorded) | |")
    lines += ["", "### Training data", ""]
    data = card.training.get("data", []) if isinstance(card.training, dict) else []
    for entry in data:
        if isinstance(entry, dict):
            parts = [entry.get("name", "?")] + [f"{k}: {entry[k]}" for k in ("citation", "terms", "used")
                                                if k in entry]
            lines.append("- " + "; ".join(str(p) for p in parts))
    if not data:
        lines.append("- not recorded")
    recipe = card.training.get("recipe") if isinstance(card.training, dict) else None
    if recipe:
        lines += ["", f"Training recipe: `{recipe}`."]
    lines += ["", "## Citations", ""] + [f"- {text} doi:{doi}" for text, doi in citations]
    lines += ["", "## Licence", "", f"{lic}. Card: {card.license or 'not stated'}.", ""]
    return "\n".join(lines)


def citations(card: ModelCard) -> list[tuple[str, str]]:
    """Return ``(text, DOI)`` of the papers the model follows.

    U-Net (3D U-Net for 3D nets) and, for a model trained on cardiac EM data, the EM-net /
    CardioVinci papers.
    """
    refs = [_CITE_3D if spec_ndim(card.spec) == 3 else _CITE_UNET]
    data = str(card.training.get("data", "")) if isinstance(card.training, dict) else ""
    if "EM-net" in data:
        refs += _CITE_MITO
    return refs


def default_test_image(card: ModelCard) -> np.ndarray | None:
    """Return the plugin's sample image for the shipped models (a middle slice for EM), else None."""
    from .. import _sample_data

    if card.name == "zdisk-fluo":
        return np.asarray(_sample_data.zdisk_sample()[0][0])
    if card.name == "mito-em" and spec_ndim(card.spec) == 2:
        stack = np.asarray(_sample_data.em_sample()[0][0])
        return stack[stack.shape[0] // 2]
    return None


def _test_image(card: ModelCard, image: np.ndarray | None, size: int) -> np.ndarray:
    """Return a 2D/3D test image whose sides are valid input sizes (a centred crop, or synthetic)."""
    ndim = spec_ndim(card.spec)
    multiple = size_multiple(card.spec)
    if image is None:
        rng = np.random.default_rng(0)
        image = rng.normal(100.0, 20.0, (size,) * ndim).astype(np.float32)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != ndim:
        raise CardiosegError(f"test image must be {ndim}D for model {card.name!r}, got {image.shape}")
    crop = []
    for n in image.shape:
        edge = min(n, size) // multiple * multiple
        if edge == 0:
            raise CardiosegError(f"test image {image.shape} is smaller than the net's stride {multiple}")
        crop.append(slice((n - edge) // 2, (n - edge) // 2 + edge))
    return np.ascontiguousarray(image[tuple(crop)])


def _probabilities(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(x)).float(), dim=1).numpy()


def _onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, axes: list[str]) -> None:
    dynamic = {0: "batch", **{i + 2: a for i, a in enumerate(axes)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"],
                          output_names=["output"], opset_version=17,
                          dynamic_axes={"input": dynamic, "output": dynamic})


def _torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(path))


def export_bioimageio(
    model: torch.nn.Module,
    card: ModelCard,
    output: str | os.PathLike,
    *,
    test_image: np.ndarray | None = None,
    test_size: int = 256,
    license: str | None = None,
    authors: list[str] | None = None,
    weight_formats: tuple[str, ...] = ("pytorch_state_dict", "torchscript", "onnx"),
    cover_title: str = "test input",
) -> Path:
    """Write a bioimage.io model package (``.zip``) for ``model`` atomically.

    Parameters
    ----------
    model, card : torch.nn.Module, ModelCard
        E.g. from :func:`models.load_model`; the model is exported on the CPU in float32.
    output : path-like
        The ``.zip`` to write.
    test_image : numpy.ndarray, optional
        A ``YX`` (``ZYX`` for 3D nets) image; its centred crop of at most ``test_size`` px per
        side (rounded down to the stride) becomes the test input. Default: random noise.
    license : str, optional
        SPDX id; default: the first one found in ``card.license``.
    authors : list of str, optional
        Author names; default ``["napari-cardioseg developers"]``.
    weight_formats : tuple of str
        Any of ``pytorch_state_dict`` (only for :data:`STATE_DICT_ARCHS`), ``torchscript``, ``onnx``.

    Returns
    -------
    pathlib.Path
        ``output``.
    """
    v0_5 = _require_spec()
    from bioimageio.spec import save_bioimageio_package

    output = Path(output)
    if output.suffix != ".zip":
        raise CardiosegError(f"{output}: a bioimage.io package is written as a .zip file")
    unknown = set(weight_formats) - {"pytorch_state_dict", "torchscript", "onnx"}
    if unknown or not weight_formats:
        raise CardiosegError(f"unknown weight formats {sorted(unknown)}; use pytorch_state_dict, "
                             "torchscript, onnx")
    if "pytorch_state_dict" in weight_formats and card.spec["arch"] not in STATE_DICT_ARCHS:
        raise CardiosegError(
            f"architecture {card.spec['arch']!r} cannot be exported as pytorch_state_dict "
            "(no standalone source); export torchscript and onnx only"
        )
    if card.spec["in_channels"] != 1:
        raise CardiosegError("only single-channel (greyscale) models can be exported")
    lic = spdx_license(card, license)
    ndim = spec_ndim(card.spec)
    multiple = size_multiple(card.spec)
    axes = ["y", "x"] if ndim == 2 else ["z", "y", "x"]

    model = model.to("cpu").float().eval()
    image = _test_image(card, test_image, test_size)
    fitted = fit_normalization(image, card.normalization)
    x = apply_normalization(image, fitted)[None, None]
    raw = image[None, None]
    prob = _probabilities(model, x)

    with tempfile.TemporaryDirectory(prefix="cardioseg-export-") as tmp_dir:
        tmp = Path(tmp_dir)
        np.save(tmp / "test_input.npy", raw)
        np.save(tmp / "test_output.npy", prob)
        _cover(image if ndim == 2 else image[image.shape[0] // 2],
               prob[0] if ndim == 2 else prob[0][:, prob.shape[2] // 2], tmp / "cover.png",
               cover_title)
        cites = citations(card)
        (tmp / "README.md").write_text(readme(card, cites, lic), encoding="utf-8")

        example = torch.from_numpy(x)
        weights: dict[str, Any] = {}
        pytorch_version = v0_5.Version(torch.__version__.split("+")[0])
        if "pytorch_state_dict" in weight_formats:
            (tmp / ARCH_FILE).write_text(architecture_source(), encoding="utf-8")
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
                        for k, v in model.state_dict().items()}, buffer)
            (tmp / "weights.pt").write_bytes(buffer.getvalue())
            weights["pytorch_state_dict"] = v0_5.PytorchStateDictWeightsDescr(
                source=tmp / "weights.pt", pytorch_version=pytorch_version,
                architecture=v0_5.ArchitectureFromFileDescr(
                    source=tmp / ARCH_FILE, callable=v0_5.Identifier("build"),
                    kwargs=dict(card.spec)))
        if "torchscript" in weight_formats:
            _torchscript(model, example, tmp / "weights.torchscript.pt")
            weights["torchscript"] = v0_5.TorchscriptWeightsDescr(
                source=tmp / "weights.torchscript.pt", pytorch_version=pytorch_version,
                **({"parent": "pytorch_state_dict"} if "pytorch_state_dict" in weights else {}))
        if "onnx" in weight_formats:
            _onnx(model, example, tmp / "weights.onnx", axes)
            import onnx

            weights["onnx"] = v0_5.OnnxWeightsDescr(
                source=tmp / "weights.onnx", opset_version=17,
                **({"parent": next(iter(weights))} if weights else {}))
            del onnx

        size = v0_5.ParameterizedSize(min=multiple, step=multiple)
        input_axes = [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier("grey")])]
        input_axes += [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=size) for a in axes]
        output_axes = [v0_5.BatchAxis(), v0_5.ChannelAxis(
            channel_names=[v0_5.Identifier(_identifier(n)) for n in card.class_names])]
        output_axes += [v0_5.SpaceOutputAxis(id=v0_5.AxisId(a), size=v0_5.SizeReference(
            tensor_id=v0_5.TensorId("input"), axis_id=v0_5.AxisId(a))) for a in axes]
        if card.pixel_size and len(card.pixel_size) >= len(axes):
            for axis_list in (input_axes, output_axes):
                for axis, um in zip(axis_list[2:], card.pixel_size[-len(axes):], strict=True):
                    axis.unit, axis.scale = "micrometer", float(um)
        inputs = [v0_5.InputTensorDescr(
            id=v0_5.TensorId("input"), axes=input_axes,
            test_tensor=v0_5.FileDescr(source=tmp / "test_input.npy"),
            preprocessing=_preprocessing(v0_5, card, axes),
            description="greyscale image (raw intensities; normalised by the preprocessing)")]
        outputs = [v0_5.OutputTensorDescr(
            id=v0_5.TensorId("probabilities"), axes=output_axes,
            test_tensor=v0_5.FileDescr(source=tmp / "test_output.npy"),
            data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
            postprocessing=[v0_5.SoftmaxDescr(kwargs=v0_5.SoftmaxKwargs(axis=v0_5.AxisId("channel")))],
            description="softmax probability per class")]
        descr = v0_5.ModelDescr(
            name=_display_name(card.name),
            description=(card.description or "napari-cardioseg segmentation model")[:500],
            authors=[v0_5.Author(name=n) for n in (authors or ["napari-cardioseg developers"])],
            cite=[v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in cites],
            license=lic,
            tags=_tags(card),
            covers=[v0_5.FileDescr(source=tmp / "cover.png")],
            documentation=v0_5.FileDescr(source=tmp / "README.md"),
            inputs=inputs,
            outputs=outputs,
            weights=v0_5.WeightsDescr(**weights),
            config={"napari-cardioseg": {"card": {  # the receptive field: tiles overlap as here
                **_jsonable(card), "receptive_field": list(card.receptive_field_px())}}},
            version="0.1.0",
        )
        with atomic_path(output) as target, warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # files bioimageio.spec leaves open
            packed = save_bioimageio_package(descr, output_path=tmp / "package.zip")
            shutil.move(str(packed), target)

    return output


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name.strip()) or "class"
    return ident if ident[0].isalpha() else f"c_{ident}"


def _display_name(name: str) -> str:
    """Make a bioimage.io name: 5-128 characters from letters, digits, ``_+- ()``."""
    cleaned = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name)
    return cleaned if len(cleaned) >= 5 else f"cardioseg {cleaned}"


def _tags(card: ModelCard) -> list[str]:
    ndim = spec_ndim(card.spec)
    tags = ["napari-cardioseg", "semantic-segmentation", "pytorch", "unet", f"{ndim}d",
            "cardiomyocyte"]
    text = f"{card.name} {card.description}".lower()
    for key, tag in (("em", "electron-microscopy"), ("mito", "mitochondria"),
                     ("fluo", "fluorescence-light-microscopy"), ("z-disk", "z-disk"),
                     ("zdisk", "z-disk")):
        if re.search(rf"\b{key}", text) and tag not in tags:
            tags.append(tag)
    return tags


def _jsonable(card: ModelCard) -> dict:
    """Return the card as plain JSON values (NaN → null)."""
    return json.loads(card.to_json())



def export_steps(model: str | os.PathLike | tuple[torch.nn.Module, ModelCard], path: str | os.PathLike,
                 license: str | None = None) -> Generator[Progress, None, Path]:
    """Write ``model`` (a name or card path, or a loaded ``(net, card)``) as a package at ``path``.

    One step; ``license`` (SPDX) is needed when the card names none this exporter recognises.
    """
    from .models import load_model

    yield Progress(0, 1, "export", f"exporting to {Path(path).name}")
    net, card = model if isinstance(model, tuple) else load_model(model)
    out = export_bioimageio(net, card, path, license=license)
    yield Progress(1, 1, "export", f"exported {out.name}")
    return out


__all__ = ["KNOWN_LICENSES", "STATE_DICT_ARCHS", "architecture_source", "citations", "default_test_image",
           "export_bioimageio", "export_steps", "readme", "spdx_license"]
