"""Export a model as a bioimage.io package from a widget: ask the licence and the file, then a worker.

Shared by the Predict widget (the chosen model) and the Train widget (the model just trained).
The package is written by :func:`core.bioimageio_export.export_steps`; a card that names no licence
the exporter recognises (models trained from scratch, or from a card without one) gets a licence
chosen by the user, never an invented one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QInputDialog, QWidget

from ..core.errors import CardiosegError
from ..core.models import ModelCard
from ._common import report_error
from .workers import start_generator


def _require_extra() -> None:
    if importlib.util.find_spec("bioimageio") is None or importlib.util.find_spec(
            "bioimageio.spec") is None:
        raise CardiosegError("bioimage.io export needs the optional extra: "
                             "pip install 'napari-cardioseg[bioimageio]'")


def ask_license(parent: QWidget, card: ModelCard) -> str | None:
    """Return the card's SPDX licence, or one the user picks (None if cancelled)."""
    from ..core.bioimageio_export import KNOWN_LICENSES, spdx_license

    try:
        return spdx_license(card)
    except CardiosegError:
        choice, ok = QInputDialog.getItem(
            parent, "Licence", f"Model {card.name!r} names no licence. Licence of the package:",
            list(KNOWN_LICENSES), 0, False)
        return choice if ok and choice else None


def export_model(owner: Any, parent: QWidget, model: str | tuple[Any, ModelCard], card: ModelCard,
                 on_yield: Callable, on_finish: Callable[[], None]) -> Any:
    """Ask the licence and the ``.zip`` path, then export in a worker; returns it (None if cancelled).

    ``model`` is a model name or card path, or a loaded ``(net, card)`` pair.
    """
    try:
        _require_extra()
    except CardiosegError as exc:
        report_error(exc)
        return None
    license = ask_license(parent, card)
    if license is None:
        return None
    path, _ = QFileDialog.getSaveFileName(parent, "Export to bioimage.io", f"{card.name}.zip",
                                          "bioimage.io package (*.zip)")
    if not path:
        return None
    if not path.lower().endswith(".zip"):
        path += ".zip"
    from ..core.bioimageio_export import export_steps

    return start_generator(export_steps, model, Path(path), license, owner=owner,
                           activity=f"Export ({card.name})", on_yield=on_yield, on_finish=on_finish)
