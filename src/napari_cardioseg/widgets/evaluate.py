"""Evaluate widget: prediction vs ground-truth layers (+ optional ignore mask) → metrics table."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, Container, PushButton
from napari.layers import Image, Labels
from qtpy.QtWidgets import QFileDialog, QTableView

from ..core.errors import CardiosegError
from ..core.metrics import evaluate
from ..core.progress import Progress
from ..core.table import Table
from . import workers
from ._common import full_resolution, layer_choice, report_error
from .measure_table import TableModel

if TYPE_CHECKING:
    import napari

#: words in a layer name that suggest ground truth
TRUTH_WORDS = ("truth", "gt", "ground", "manual", "annot")


def _is_truth(name: str) -> bool:
    return any(word in name.lower() for word in TRUTH_WORDS)


def _scores(pred: Any, truth: Any, ignore: Any, binary: bool) -> Generator[Progress, None, Table]:
    """Worker side: read the arrays (lazy ones too, in :func:`evaluate`) and score them."""
    yield Progress(0, None, "evaluate", "reading the layers")
    return evaluate(pred, truth, ignore=ignore, binary=binary)


class EvaluateWidget(Container):
    """Prediction vs ground-truth layers (+ optional ignore mask) → per-class metrics table."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        kinds = (Labels, Image)
        self._pred = layer_choice(napari_viewer, kinds, "prediction",
                                  "The segmentation to score (a Labels layer).")
        self._truth = layer_choice(napari_viewer, kinds, "ground truth",
                                   "The reference segmentation, a different layer.")
        self._ignore = layer_choice(napari_viewer, kinds, "ignore mask",
                                    "Nonzero pixels are left out of every count.", nullable=True)
        self._binary = CheckBox(text="foreground vs background",
                                tooltip="score any object against background, not class by class")
        self._run = PushButton(
            text="Evaluate",
            tooltip="Compare the prediction with the ground truth: overlap scores per class.")
        self._export = PushButton(text="Export CSV", tooltip="Save the scores table as CSV.")
        super().__init__(widgets=[self._pred, self._truth, self._ignore, self._binary, self._run,
                                  self._export])
        self.model = TableModel()
        self.view = QTableView()
        self.view.setModel(self.model)
        self.native.layout().addWidget(self.view)
        self.table: Table | None = None
        self.worker: Any = None
        self._run.changed.connect(self.evaluate)
        self._export.changed.connect(lambda: self.export())
        napari_viewer.layers.events.inserted.connect(self._refresh)
        napari_viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    def _refresh(self, _event: Any = None) -> None:
        """Update the choices; default to a Labels prediction and a different truth layer."""
        self.reset_choices()
        layers = [ly for ly in self._viewer.layers if isinstance(ly, Labels | Image)]
        labels = [ly for ly in layers if isinstance(ly, Labels)]
        pred = self._pred.value
        if not isinstance(pred, Labels) or _is_truth(pred.name):
            preds = [ly for ly in labels if not _is_truth(ly.name)] or labels
            if preds:
                self._pred.value = preds[-1]
        truth = self._truth.value
        if not isinstance(truth, Labels) or truth is self._pred.value:
            others = [ly for ly in labels if ly is not self._pred.value]
            truths = [ly for ly in others if _is_truth(ly.name)] or others
            if truths:
                self._truth.value = truths[-1]

    def evaluate(self) -> None:
        """Score the chosen layers in a worker (lazy and multiscale layers at full resolution)."""
        try:
            pred, truth = self._pred.value, self._truth.value
            if pred is None or truth is None:
                raise CardiosegError("choose a prediction and a ground-truth layer")
            if pred is truth or pred.data is truth.data:
                raise CardiosegError(f"prediction and ground truth are the same layer "
                                     f"({pred.name!r}); choose two different layers")
        except CardiosegError as exc:
            report_error(exc)
            return
        ignore = None if self._ignore.value is None else full_resolution(self._ignore.value)
        self._run.enabled = False
        self.worker = workers.start_generator(
            _scores, full_resolution(pred), full_resolution(truth), ignore, self._binary.value,
            owner=self, activity="Evaluate", on_return=self._show, on_finish=self._idle)

    def _show(self, table: Table) -> None:
        self.table = table
        self.model.set_table(table)

    def _idle(self) -> None:
        self.worker = None
        self._run.enabled = True

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the metrics table as CSV (asks for a path when none is given)."""
        if self.table is None:
            report_error(CardiosegError("evaluate first, then export"))
            return None
        if path is None:
            chosen, _ = QFileDialog.getSaveFileName(self.native, "Export metrics", "metrics.csv",
                                                    "CSV (*.csv)")
            if not chosen:
                return None
            path = chosen
        try:
            self.table.write_csv(path)
        except CardiosegError as exc:
            report_error(exc)
            return None
        return Path(path)
