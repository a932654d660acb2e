"""Segmentation metrics on hand-made arrays, the ignore mask, and the table writer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.metrics import evaluate, format_table
from napari_cardioseg.core.table import Table, read_csv


def test_binary_counts_and_scores():
    gt = np.array([[1, 1, 1, 0], [0, 0, 0, 0]])
    pred = np.array([[1, 1, 0, 1], [0, 0, 0, 0]])
    row = evaluate(pred, gt).row(0)  # TP 2, FP 1, FN 1, TN 4
    assert (row["class"], row["tp"], row["fp"], row["fn"], row["tn"]) == (1, 2, 1, 1, 4)
    assert row["dice"] == pytest.approx(4 / 6)
    assert row["jaccard"] == pytest.approx(2 / 4)
    assert row["precision"] == pytest.approx(2 / 3)
    assert row["recall"] == pytest.approx(2 / 3)
    assert row["specificity"] == pytest.approx(4 / 5)


def test_per_class_and_mean_row():
    gt = np.array([[1, 1, 2, 2], [0, 0, 2, 2]])
    pred = np.array([[1, 0, 2, 2], [0, 0, 2, 1]])
    table = evaluate(pred, gt)
    assert list(table["class"]) == [1, 2, -1]
    c1, c2, mean = (table.row(i) for i in range(3))
    assert c1["dice"] == pytest.approx(2 * 1 / (2 + 1 + 1))
    assert c2["dice"] == pytest.approx(2 * 3 / (6 + 0 + 1))
    assert mean["dice"] == pytest.approx((c1["dice"] + c2["dice"]) / 2)
    assert mean["tp"] == 4
    assert "mean" in format_table(table)


def test_ignore_mask_removes_pixels():
    gt = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 1, 1, 1]])
    ignore = np.array([[0, 0, 1, 1]])
    assert evaluate(pred, gt)["dice"][0] == pytest.approx(4 / 6)
    row = evaluate(pred, gt, ignore=ignore).row(0)
    assert (row["tp"], row["fp"], row["tn"]) == (2, 0, 0)
    assert row["dice"] == 1.0
    assert np.isnan(row["specificity"])  # no negatives left: undefined, not a fake number


def test_binary_mode_for_instance_labels():
    gt = np.array([[3, 3, 0, 7]])
    pred = np.array([[1, 1, 0, 1]])
    assert evaluate(pred, gt, binary=True)["dice"][0] == 1.0
    with pytest.raises(CardiosegError, match=r"values \[1\] and the ground truth's \[3, 7\] share none"):
        evaluate(pred, gt)  # classes 1, 3 and 7 would all score 0
    assert len(evaluate(pred, gt, classes=[1, 3, 7])) == 4  # asked for: scored as asked


def test_a_0_255_mask_is_not_scored_class_by_class():
    gt = np.array([[255, 255, 0, 0]], np.uint8)
    pred = np.array([[1, 1, 0, 1]], np.uint8)
    with pytest.raises(CardiosegError, match="--binary"):
        evaluate(pred, gt)
    assert evaluate(pred, gt, binary=True)["dice"][0] == pytest.approx(0.8)
    assert evaluate(np.zeros_like(pred), gt)["dice"][0] == 0.0  # an empty prediction is scored


def test_errors():
    with pytest.raises(CardiosegError, match="shape"):
        evaluate(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(CardiosegError, match="whole image"):
        evaluate(np.zeros((4, 4)), np.zeros((4, 4)), ignore=np.ones((4, 4)))
    with pytest.raises(CardiosegError, match="NaN"):
        evaluate(np.full((4, 4), np.nan), np.zeros((4, 4)))


def test_table_csv_round_trip(tmp_path):
    table = Table({"label": np.array([1, 2]), "length_um": np.array([0.5, np.nan])})
    path = table.write_csv(tmp_path / "t.csv")
    assert path.read_text().splitlines() == ["label,length_um", "1,0.5", "2,"]
    back = read_csv(path)
    assert list(back["label"]) == [1.0, 2.0] and np.isnan(back["length_um"][1])
    with pytest.raises(CardiosegError, match="does not exist"):
        table.write_csv(tmp_path / "missing" / "t.csv")
