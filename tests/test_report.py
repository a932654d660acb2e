"""The one-page report: numbers equal to ``core.measure``'s, honest units, PNG size, CLI."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import numpy as np
import pytest
from matplotlib.image import imread
from skimage.draw import disk

from napari_cardioseg.cli import main
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.measure import measure
from napari_cardioseg.core.report import DPI, FIGURE_SIZE, make_report
from napari_cardioseg.core.writes import write_tiff

SPACING = (0.1, 0.1)
RADII = (8, 11, 14)
PNG_SHAPE = (round(FIGURE_SIZE[1] * DPI), round(FIGURE_SIZE[0] * DPI))  # rows, columns


def three_disks() -> np.ndarray:
    """Three separate disks of known radius (labels 1, 2, 3) in a 90 x 150 image."""
    labels = np.zeros((90, 150), np.uint16)
    for k, (radius, centre) in enumerate(zip(RADII, ((30, 25), (45, 70), (50, 120)),
                                             strict=True)):
        labels[disk(centre, radius, shape=labels.shape)] = k + 1
    return labels


def zdisk_lines() -> np.ndarray:
    """Three vertical Z-disk lines of 29 px, 20 px apart."""
    mask = np.zeros((40, 60), np.uint8)
    mask[5:35, 10::20] = 1
    return mask


def cell(page: str, table: str, row: str, column: int) -> str:
    """Text of one cell (0 = first column) of the row starting with ``row`` in ``table``."""
    body = page.split(f'<table class="{table}">', 1)[1].split("</table>", 1)[0]
    for line in body.splitlines():
        cells = re.findall(r"<td>(.*?)</td>", line)
        if cells and cells[0] == row:
            return cells[column]
    raise AssertionError(f"no row {row!r} in the {table} table")


def embedded_png(page: str) -> bytes:
    return base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1))


def test_calibrated_2d_report_matches_measure(tmp_path):
    labels = three_disks()
    image = np.where(labels > 0, 200.0, 50.0)
    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    report = make_report(image, labels, SPACING, "shapes", tmp_path / "r.html", "three disks",
                         labels_name="disks.tif", image_name="raw.tif", model="mito-em",
                         when=when)
    table = measure(labels, SPACING, "shapes").objects
    areas = table["area_um2"]
    # the disks really are the known sizes: area ~ pi r^2 (pixel-counted) in µm²
    np.testing.assert_allclose(areas, [np.pi * (r * 0.1) ** 2 for r in RADII], rtol=0.05)
    page = report.html.read_text(encoding="utf-8")
    assert '<p class="count"><b>objects</b>: 3</p>' in page
    assert cell(page, "summary", "count", 2) == "3"
    assert cell(page, "objects", "area_um2", 1) == "µm²"
    assert float(cell(page, "objects", "area_um2", 3)) == pytest.approx(areas.mean(), rel=1e-3)
    assert float(cell(page, "objects", "area_um2", 6)) == pytest.approx(areas.min(), rel=1e-3)
    assert float(cell(page, "objects", "area_um2", 7)) == pytest.approx(areas.max(), rel=1e-3)
    assert float(cell(page, "summary", "total_area_um2", 2)) == pytest.approx(areas.sum(),
                                                                              rel=1e-3)
    for text in ("disks.tif", "raw.tif", "mito-em", "0.1 × 0.1 µm", "2026-01-02 03:04 UTC"):
        assert text in page.split('<p class="protocol">', 1)[1].split("</p>", 1)[0]
    assert embedded_png(page) == report.png.read_bytes()
    png = imread(report.png)
    assert png.shape[:2] == PNG_SHAPE


def test_uncalibrated_report_says_px_and_never_um(tmp_path):
    labels = three_disks()
    report = make_report(None, labels, None, "shapes", tmp_path / "r.html")
    page = report.html.read_text(encoding="utf-8")
    assert "µm" not in page and "_um" not in page and "micro" not in page.lower()
    assert "uncalibrated" in page
    areas = measure(labels, None, "shapes").objects["area_px2"]
    assert cell(page, "objects", "area_px2", 1) == "px²"
    assert float(cell(page, "objects", "area_px2", 3)) == pytest.approx(areas.mean(), rel=1e-3)
    assert float(cell(page, "objects", "feret_max_px", 3)) > 2 * min(RADII) - 1  # pixels, not µm


def test_stack_report_has_two_views_and_per_slice_summary(tmp_path):
    lines = np.stack([zdisk_lines()] * 5)
    lines[4] = 0  # an empty slice
    image = lines.astype(np.float32)
    report = make_report(image, lines, (0.5, 0.1, 0.1), "zdisk", tmp_path / "z.html")
    page = report.html.read_text(encoding="utf-8")
    assert '<p class="count"><b>objects</b>: 12</p>' in page  # 3 lines on 4 of 5 slices
    assert "mean of 5 slices" in page
    assert float(cell(page, "objects", "length_um", 3)) == pytest.approx(2.9, rel=1e-3)
    assert cell(page, "summary", "count", 3) == "0" and cell(page, "summary", "count", 4) == "3"
    assert float(cell(page, "summary", "sarcomere_length_spacing_um", 4)) == pytest.approx(2.0)
    assert imread(report.png).shape[:2] == PNG_SHAPE


def test_3d_shapes_report(tmp_path):
    labels = np.zeros((10, 40, 40), np.uint8)
    labels[2:8, 5:15, 5:15] = 1
    labels[3:6, 20:30, 22:36] = 2
    report = make_report(None, labels, (0.2, 0.1, 0.1), "shapes", tmp_path / "s.html")
    page = report.html.read_text(encoding="utf-8")
    volumes = [600 * 0.002, 420 * 0.002]
    assert float(cell(page, "objects", "volume_um3", 3)) == pytest.approx(np.mean(volumes))
    assert float(cell(page, "summary", "total_volume_um3", 2)) == pytest.approx(sum(volumes))
    assert "sphericity" in page


def test_empty_labels_report(tmp_path):
    report = make_report(None, np.zeros((32, 32), np.uint8), SPACING, "shapes",
                         tmp_path / "e.html")
    page = report.html.read_text(encoding="utf-8")
    assert '<b>objects</b>: 0' in page and cell(page, "objects", "area_um2", 3) == "n/a"
    assert imread(report.png).shape[:2] == PNG_SHAPE


def test_bad_input_is_refused(tmp_path):
    labels = three_disks()
    with pytest.raises(CardiosegError, match="html"):
        make_report(None, labels, SPACING, "shapes", tmp_path / "r.png")
    with pytest.raises(CardiosegError, match="shape"):
        make_report(np.zeros((10, 10)), labels, SPACING, "shapes", tmp_path / "r.html")
    with pytest.raises(CardiosegError, match="unknown measurement kind"):
        make_report(None, labels, SPACING, "mito", tmp_path / "r.html")
    assert not list(tmp_path.iterdir())


def test_cli_round_trip(tmp_path, capsys):
    labels = three_disks()
    write_tiff(tmp_path / "disks.tif", labels, SPACING)
    write_tiff(tmp_path / "raw.tif", np.where(labels > 0, 200, 50).astype(np.uint8), SPACING)
    out = tmp_path / "report.html"
    argv = ["report", tmp_path / "disks.tif", "--kind", "shapes", "--image", tmp_path / "raw.tif",
            "--model", "mito-em", "-o", out]
    assert main([str(a) for a in argv]) == 0
    assert "3 objects in µm" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    areas = measure(labels, SPACING, "shapes").objects["area_um2"]
    assert float(cell(page, "objects", "area_um2", 3)) == pytest.approx(areas.mean(), rel=1e-3)
    assert "disks.tif" in page and "raw.tif" in page and "mito-em" in page
    assert imread(tmp_path / "report.png").shape[:2] == PNG_SHAPE
    # uncalibrated file: pixels; --pixel-size calibrates it; --class picks one label value
    write_tiff(tmp_path / "bare.tif", labels)
    assert main(["report", str(tmp_path / "bare.tif"), "--kind", "shapes", "-o", str(out)]) == 0
    assert "µm" not in out.read_text(encoding="utf-8")
    assert main(["report", str(tmp_path / "bare.tif"), "--kind", "shapes", "--pixel-size", "0.1",
                 "0.1", "--class", "2", "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert '<b>objects</b>: 1' in page
    assert float(cell(page, "objects", "area_um2", 3)) == pytest.approx(areas[1], rel=1e-3)


def test_cli_refuses_overwriting_an_input(tmp_path, capsys):
    write_tiff(tmp_path / "disks.tif", three_disks(), SPACING)
    html_input = tmp_path / "in.html"
    html_input.write_text("keep")
    assert main(["report", str(tmp_path / "disks.tif"), "--kind", "shapes", "--image",
                 str(html_input), "-o", str(html_input)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert html_input.read_text() == "keep"
    assert main(["report", str(tmp_path / "disks.tif"), "--kind", "shapes", "-o",
                 str(tmp_path / "out.csv")]) == 2
    assert main(["report", str(tmp_path / "disks.tif"), "--kind", "nope", "-o",
                 str(tmp_path / "r.html")]) == 2
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.png").exists()
