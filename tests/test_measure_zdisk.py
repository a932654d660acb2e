"""Z-disk measures against lines and striations with known length, angle and period."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import line

from napari_cardioseg.core.measure import measure
from napari_cardioseg.core.measure.zdisk import fft_period, skeleton_length


def striations(shape, spacing, period, axis_deg, disk_len=1.5, fibril=2.0, thick=0.25):
    """Z-disk mask and intensity: disks across a myofibril axis at ``axis_deg``, every ``period``."""
    yy, xx = np.indices(shape).astype(float)
    y, x = yy * spacing[0], xx * spacing[1]
    t = np.radians(axis_deg)
    along = -y * np.sin(t) + x * np.cos(t)
    lateral = -y * np.cos(t) - x * np.sin(t)
    phase = (along / period) % 1.0
    dist = np.minimum(phase, 1 - phase) * period
    in_fibril = np.abs((lateral / fibril) % 1.0 - 0.5) * fibril <= disk_len / 2
    mask = (dist <= thick / 2) & in_fibril
    image = np.exp(-((dist / 0.15) ** 2)) * (0.5 + 0.5 * in_fibril)
    return mask.astype(np.uint8), image


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 0.25)])
def test_lines_of_known_length_and_angle(spacing):
    mask = np.zeros((64, 64), np.uint8)
    mask[line(10, 5, 10, 45)] = 1   # horizontal, 40 steps
    mask[line(20, 5, 50, 35)] = 1   # diagonal, 30 steps each way
    mask[line(5, 55, 55, 55)] = 1   # vertical, 50 steps
    objects = measure(mask, spacing, "zdisk").objects
    by_row = {round(v): i for i, v in enumerate(objects["centroid_y_um"] / spacing[0])}
    py, px = spacing
    horizontal, diagonal, vertical = (objects.row(by_row[k]) for k in (10, 35, 30))
    assert horizontal["length_um"] == pytest.approx(40 * px)
    assert vertical["length_um"] == pytest.approx(50 * py)
    assert diagonal["length_um"] == pytest.approx(30 * np.hypot(py, px))
    assert horizontal["orientation_deg"] == pytest.approx(0.0, abs=1e-6)
    assert vertical["orientation_deg"] == pytest.approx(90.0)
    # down-right on screen; with anisotropic pixels the physical angle changes
    assert diagonal["orientation_deg"] == pytest.approx(180 - np.degrees(np.arctan2(py, px)))
    assert np.allclose(objects["straightness"], 1.0)


def test_skeleton_length_counts_staircase_corners_once():
    stair = np.zeros((5, 5), bool)
    stair[0, 0] = stair[0, 1] = stair[1, 1] = stair[1, 2] = True  # two steps right, one down
    assert skeleton_length(stair, (1.0, 1.0)) == pytest.approx(3.0)


def test_width_of_bands_and_curved_straightness():
    mask = np.zeros((60, 70), np.uint8)
    mask[10:15, 5:65] = 1   # 5 pixels thick
    mask[25:28, 5:65] = 1   # 3 pixels thick
    yy, xx = np.indices(mask.shape)
    mask[(np.hypot(yy - 60, xx - 35) < 20) & (np.hypot(yy - 60, xx - 35) >= 19) & (yy < 55)] = 1
    objects = measure(mask, (0.2, 0.1), "zdisk").objects
    rows = np.argsort(objects["centroid_y_um"])
    assert objects["width_um"][rows[0]] == pytest.approx(5 * 0.2)
    assert objects["width_um"][rows[1]] == pytest.approx(3 * 0.2)
    assert objects["straightness"][rows[2]] < 0.9  # the arc


@pytest.mark.parametrize("pixels", [1, 2, 3, 4, 5, 6])
def test_width_is_whole_for_even_and_odd_bands(pixels):
    # confocal Z-disks are 2-4 px wide: an even width must not come out a pixel short
    mask = np.zeros((40, 80), np.uint8)
    mask[10:10 + pixels, 5:75] = 1
    mask[:, 38:42] = 0  # a gap: two disks
    widths = measure(mask, (0.1, 0.1), "zdisk").objects["width_um"]
    assert widths == pytest.approx([pixels * 0.1] * 2)
    turned = measure(mask.T.copy(), (0.2, 0.1), "zdisk").objects["width_um"]
    assert turned == pytest.approx([pixels * 0.1] * 2)  # across x, 0.1 µm pixels


@pytest.mark.parametrize(("spacing", "period", "axis"), [
    ((0.1, 0.1), 1.9, 0.0), ((0.1, 0.1), 2.1, 30.0), ((0.15, 0.1), 1.8, 75.0),
    ((0.08, 0.08), 2.3, 135.0),
])
def test_sarcomere_length_of_striations(spacing, period, axis):
    mask, image = striations((200, 200), spacing, period, axis)
    summary = measure(mask, spacing, "zdisk", image=image).summary.row(0)
    assert summary["sarcomere_length_spacing_um"] == pytest.approx(period, rel=0.02)
    assert summary["sarcomere_length_fft_um"] == pytest.approx(period, rel=0.02)
    assert fft_period(mask, spacing)[0] == pytest.approx(period, rel=0.02)  # mask alone
    assert summary["myofibril_axis_deg"] == pytest.approx(axis, abs=1.0)
    assert summary["order_parameter"] > 0.98


def test_relative_orientation_density_and_random_order():
    mask, _ = striations((150, 150), (0.1, 0.1), 2.0, 0.0)
    result = measure(mask, (0.1, 0.1), "zdisk")
    assert np.allclose(result.objects["orientation_rel_deg"], 90.0, atol=1.0)
    summary = result.summary.row(0)
    assert summary["density_per_um2"] == pytest.approx(summary["count"] / (15 * 15))
    rng = np.random.default_rng(1)
    sticks = np.zeros((200, 200), np.uint8)
    for _ in range(80):
        y, x = rng.integers(10, 190, 2)
        t = rng.uniform(0, np.pi)
        sticks[line(y, x, int(y + 8 * np.sin(t)), int(x + 8 * np.cos(t)))] = 1
    assert measure(sticks, (0.1, 0.1), "zdisk").summary["order_parameter"][0] < 0.4


def test_cell_features_of_striated_cell():
    mask, image = striations((200, 200), (0.1, 0.1), 2.0, 45.0)
    cell = np.zeros_like(mask)
    cell[30:170, 20:180] = 1
    summary = measure(mask, (0.1, 0.1), "zdisk", image=image, cell_mask=cell).summary.row(0)
    assert summary["cell_area_um2"] == pytest.approx(140 * 160 * 0.01)
    assert summary["cell_aspect_ratio"] == pytest.approx(160 / 140, rel=0.01)
    assert summary["peak_distance_um"] == pytest.approx(2.0, abs=0.1)
    assert summary["peak_height"] > 1.0
    blurred = ndi.gaussian_filter(np.random.default_rng(0).random((200, 200)), 3)
    texture = measure(mask, (0.1, 0.1), "zdisk", image=blurred, cell_mask=cell).summary.row(0)
    assert texture["max_cv"] < summary["max_cv"] / 4  # isotropic texture: little direction effect
    assert texture["peak_height"] < 0.5


def test_stack_measured_per_slice_with_unique_labels():
    plane = np.zeros((30, 30), np.uint8)
    plane[5, 5:15] = plane[20, 5:25] = 1
    result = measure(np.stack([plane, plane, np.zeros_like(plane)]), (0.5, 0.1, 0.1), "zdisk")
    objects = result.objects
    assert list(objects["z"]) == [0, 0, 1, 1]
    assert len(set(objects["label"])) == 4
    assert list(result.summary["count"]) == [2, 2, 0]
    assert objects["length_um"][objects["z"] == 1] == pytest.approx([0.9, 1.9])


def test_empty_image_gives_headers(tmp_path):
    result = measure(np.zeros((32, 32), np.uint8), (0.1, 0.1), "zdisk",
                     cell_mask=np.ones((32, 32), np.uint8))
    assert len(result.objects) == 0 and "length_um" in result.objects.names
    summary = result.summary.row(0)
    assert summary["count"] == 0 and np.isnan(summary["sarcomere_length_fft_um"])
    text = result.summary.write_csv(tmp_path / "s.csv").read_text().splitlines()
    assert text[0].startswith("count,") and len(text) == 2


def test_spacing_counts_every_gap_once_when_sarcomeres_vary():
    # gaps cycle 1.6 / 1.8 / 2.0 µm (median 1.8); the nearer of each disk's two neighbours is
    # mostly 1.6 µm away, so a "nearest on either side" rule would report 1.6
    px = 0.1
    mask = np.zeros((60, 400), np.uint8)
    col = 10
    for i in range(20):
        mask[10:25, col : col + 2] = 1
        mask[35:50, col : col + 2] = 1
        col += (16, 18, 20)[i % 3]
    length = measure(mask, (px, px), "zdisk").summary.row(0)["sarcomere_length_spacing_um"]
    assert length == pytest.approx(1.8, abs=1e-6)


def test_orientation_statistics_are_axial():
    """Disks a few degrees either side of horizontal read as about 2° and 178°: the summary's
    mean orientation is horizontal with a small spread (a plain mean says 90°, a plain std 88°)."""
    from napari_cardioseg.core.measure.summary import describe_axial, half_turn

    mask = np.zeros((120, 200), np.uint8)
    for i, tilt in enumerate((-3, -2, 2, 3, -1, 1)):
        y0 = 10 + 18 * i
        rr, cc = line(y0, 20, y0 + tilt, 180)
        mask[rr, cc] = 1
    result = measure(mask, (0.1, 0.1), "zdisk")
    angles = result.objects["orientation_deg"]
    assert (angles > 90).any() and (angles < 90).any()  # both sides of 0°/180°
    assert np.all((angles >= 0) & (angles < 180))
    summary = result.summary.row(0)
    distance = min(summary["mean_orientation_deg"], 180 - summary["mean_orientation_deg"])
    assert distance < 0.5 and summary["std_orientation_deg"] < 1.5
    median = summary["median_orientation_deg"]
    assert min(median, 180 - median) < 1.0
    stats = describe_axial(np.array([170.0, 10.0, 0.0]))
    assert stats["mean"] == pytest.approx(0.0, abs=1e-9) and stats["median"] == pytest.approx(0.0)
    assert describe_axial(np.array([45.0, 45.0]))["std"] == pytest.approx(0.0, abs=1e-6)
    assert half_turn(-1e-15) == 0.0 and half_turn(180.0) == 0.0 and half_turn(-90) == 90.0


def test_disks_closer_than_the_period_range_give_no_spacing_length():
    """0.9 µm apart with the default 1-4 µm range: the gaps inside the range are two sarcomeres,
    so the spacing estimate must say so instead of reporting 1.8 µm."""
    mask, image = striations((240, 240), (0.05, 0.05), 0.9, 0.0, thick=0.2)
    summary = measure(mask, (0.05, 0.05), "zdisk", image=image).summary.row(0)
    assert np.isnan(summary["sarcomere_length_spacing_um"])
    assert "lower bound" in summary["sarcomere_note"] or "range" in summary["sarcomere_note"]
    wider = measure(mask, (0.05, 0.05), "zdisk", image=image, period_range=(0.5, 4.0))
    assert wider.summary.row(0)["sarcomere_length_spacing_um"] == pytest.approx(0.9, rel=0.05)
