"""3D/2D shape statistics against shapes with known answers, in physical units."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.measure import MEASUREMENTS, measure, measurements
from napari_cardioseg.core.measure.objects import split_objects


def ellipsoid(semi_um, spacing, margin=3):
    """Voxelised solid ellipsoid with semi-axes (z, y, x) in µm, centred in its array."""
    shape = [int(2 * a / s) + 2 * margin for a, s in zip(semi_um, spacing, strict=True)]
    grids = np.indices(shape).astype(float)
    r2 = sum(((g - (n - 1) / 2) * s / a) ** 2
             for g, n, s, a in zip(grids, shape, spacing, semi_um, strict=True))
    return (r2 <= 1).astype(np.uint8)


def test_registry_is_complete_and_documented():
    names = [(m.kind, m.level, m.name, m.ndim) for m in MEASUREMENTS]
    assert len(names) == len(set(names))
    assert all(m.description and callable(m.func) for m in MEASUREMENTS)
    cols = {m.name for m in measurements("shapes", "object", 3)}
    assert {"volume_um3", "surface_area_um2", "sa_to_volume_per_um", "sphericity", "compactness",
            "elongation", "flatness", "feret_max_um", "centroid_z_um", "bbox_x1_um"} <= cols


def test_sphere_volume_area_sphericity():
    r = 10.0
    result = measure(ellipsoid((r, r, r), (1.0, 1.0, 1.0)), (1.0, 1.0, 1.0), "shapes")
    obj = result.objects.row(0)
    assert obj["volume_um3"] == pytest.approx(4 / 3 * np.pi * r**3, rel=0.03)
    assert obj["surface_area_um2"] == pytest.approx(4 * np.pi * r**2, rel=0.03)
    assert obj["sphericity"] >= 0.95
    assert obj["compactness"] == pytest.approx(obj["sphericity"] ** 3, rel=1e-9)
    assert obj["sa_to_volume_per_um"] == pytest.approx(3 / r, rel=0.05)
    assert obj["elongation"] == pytest.approx(1.0, abs=0.02)
    assert obj["flatness"] == pytest.approx(1.0, abs=0.02)
    assert obj["feret_max_um"] == pytest.approx(2 * r, rel=0.05)


@pytest.mark.parametrize("spacing", [(1.0, 0.5, 0.5), (0.5, 0.25, 0.25)])
def test_ellipsoid_axis_ratios(spacing):
    obj = measure(ellipsoid((4.0, 8.0, 12.0), spacing), spacing, "shapes").objects.row(0)
    assert obj["elongation"] == pytest.approx(1.5, rel=0.03)
    assert obj["flatness"] == pytest.approx(2.0, rel=0.04)
    assert obj["volume_um3"] == pytest.approx(4 / 3 * np.pi * 4 * 8 * 12, rel=0.03)
    assert obj["feret_max_um"] == pytest.approx(24.0, rel=0.05)


def test_same_object_under_anisotropic_spacing():
    semi = (6.0, 6.0, 6.0)
    iso = measure(ellipsoid(semi, (0.5, 0.5, 0.5)), (0.5, 0.5, 0.5), "shapes").objects.row(0)
    aniso = measure(ellipsoid(semi, (1.0, 0.25, 0.25)), (1.0, 0.25, 0.25), "shapes").objects.row(0)
    for key in ("volume_um3", "surface_area_um2"):
        assert aniso[key] == pytest.approx(iso[key], rel=0.04), key
    assert aniso["feret_max_um"] == pytest.approx(iso["feret_max_um"], abs=1.0)  # one z step
    assert aniso["sphericity"] >= 0.95


def test_centroid_and_bbox_in_um():
    labels = np.zeros((10, 20, 30), np.uint16)
    labels[2:4, 5:9, 10:20] = 7
    obj = measure(labels, (2.0, 0.5, 0.1), "shapes", mode="labels").objects.row(0)
    assert obj["label"] == 7
    assert (obj["centroid_z_um"], obj["centroid_y_um"], obj["centroid_x_um"]) == pytest.approx(
        (2.5 * 2.0, 6.5 * 0.5, 14.5 * 0.1))
    assert (obj["bbox_z0_um"], obj["bbox_z1_um"]) == pytest.approx((4.0, 8.0))
    assert (obj["bbox_x0_um"], obj["bbox_x1_um"]) == pytest.approx((1.0, 2.0))
    assert obj["volume_um3"] == pytest.approx(2 * 4 * 10 * 2.0 * 0.5 * 0.1)


def test_2d_disc_equivalents():
    r, sp = 6.0, (0.2, 0.1)
    yy, xx = np.indices((80, 140)).astype(float)
    disc = (((yy - 40) * sp[0]) ** 2 + ((xx - 70) * sp[1]) ** 2 <= r * r).astype(np.uint8)
    result = measure(disc, sp, "shapes")
    obj = result.objects.row(0)
    assert obj["area_um2"] == pytest.approx(np.pi * r * r, rel=0.02)
    assert obj["perimeter_um"] == pytest.approx(2 * np.pi * r, rel=0.02)
    assert obj["circularity"] == pytest.approx(1.0, abs=0.05)
    assert obj["elongation"] == pytest.approx(1.0, abs=0.02)
    assert "volume_um3" not in result.objects.names
    assert result.summary["count"][0] == 1
    assert result.summary["area_fraction"][0] == pytest.approx(
        obj["area_um2"] / (80 * 140 * 0.02))


def test_summary_statistics_and_components():
    mask = np.zeros((6, 40, 40), bool)
    mask[1:3, 2:6, 2:6] = True     # 32 voxels
    mask[2:5, 20:30, 20:30] = True  # 300 voxels
    mask[4, 0, 39] = True           # 1 voxel, dropped by min_size
    result = measure(mask, (1.0, 1.0, 1.0), "shapes", min_size=2)
    assert len(result.objects) == 2
    assert sorted(result.objects["volume_um3"]) == [32.0, 300.0]
    summary = result.summary.row(0)
    assert summary["count"] == 2
    assert summary["total_volume_um3"] == 332.0
    assert summary["mean_volume_um3"] == 166.0
    assert summary["median_volume_um3"] == 166.0
    assert summary["volume_fraction"] == pytest.approx(332 / mask.size)
    assert "mean_centroid_z_um" not in summary


def test_connectivity_and_labels_as_is():
    mask = np.zeros((5, 5), np.uint8)
    mask[0, 0] = mask[1, 1] = 1
    assert split_objects(mask, connectivity=1).max() == 2
    assert split_objects(mask, connectivity=2).max() == 1
    labels = np.zeros((5, 5), np.uint8)
    labels[0, :2], labels[3, :] = 5, 9
    assert set(np.unique(split_objects(labels))) == {0, 5, 9}  # labels are used as they are


def test_empty_labels_give_headers_not_a_crash(tmp_path):
    result = measure(np.zeros((4, 16, 16), np.uint8), (1.0, 0.5, 0.5), "shapes")
    assert len(result.objects) == 0
    assert "volume_um3" in result.objects.names
    assert result.summary["count"][0] == 0
    path = result.objects.write_csv(tmp_path / "o.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("label,volume_um3")
    assert len(result.summary.write_csv(tmp_path / "s.csv").read_text().splitlines()) == 2


@pytest.mark.parametrize(("labels", "spacing", "message"), [
    (np.zeros((2, 3, 4, 5)), (1, 1, 1), "2D"),
    (np.full((8, 8), np.nan), (1, 1), "NaN"),
    (np.zeros((0, 8)), (1, 1), "empty"),
    (np.zeros((8, 8)), (1, 1, 1), "pixel size"),
    (np.zeros((8, 8)), (1, -1), "positive"),
    (np.zeros((20, 20, 3), np.uint8), (1, 1, 1), "RGB"),
])
def test_bad_input_raises(labels, spacing, message):
    with pytest.raises(CardiosegError, match=message):
        measure(labels, spacing, "shapes")


def test_unknown_kind_and_zdisk_only_inputs():
    with pytest.raises(CardiosegError, match="kind"):
        measure(np.zeros((8, 8)), (1, 1), "volume")
    with pytest.raises(CardiosegError, match=r"not used for shapes.*zdisk"):
        measure(np.zeros((8, 8)), (1, 1), "shapes", image=np.zeros((8, 8)))


def test_one_class_of_a_multi_class_prediction():
    labels = np.zeros((6, 40, 40), np.uint8)
    labels[1:3, 2:8, 2:8] = 1       # class 1: two blobs
    labels[3:6, 20:30, 25:35] = 1
    labels[1:4, 30:34, 2:6] = 2     # class 2: two blobs touching class 1 would merge in "auto"
    labels[2, 8:10, 2:8] = 2
    spacing = (0.5, 0.1, 0.1)
    second = measure(labels, spacing, "shapes", class_value=2).objects
    assert sorted(second["volume_um3"]) == pytest.approx(sorted([48 * 0.005, 12 * 0.005]))
    assert len(measure(labels, spacing, "shapes", class_value=1).objects) == 2
    assert len(measure(labels, spacing, "shapes").objects) == 2  # as-is: one object per value
    with pytest.raises(CardiosegError, match=r"class 3 is not in the labels; they hold \[1, 2\]"):
        measure(labels, spacing, "shapes", class_value=3)
    with pytest.raises(CardiosegError, match="connected components"):
        measure(labels, spacing, "shapes", class_value=2, mode="labels")


def test_a_multi_class_prediction_measured_whole_is_flagged():
    """Classes 1 and 2 with many pieces each read as two 'objects' in auto mode: say so."""
    labels = np.zeros((40, 40), np.uint8)
    for i in range(4):
        labels[2 + 9 * i:6 + 9 * i, 2:6] = 1
        labels[2 + 9 * i:6 + 9 * i, 20:24] = 2
    with pytest.warns(UserWarning, match="2 values but 8 separate pieces.*--class N"):
        result = measure(labels, (0.1, 0.1), "shapes")
    assert len(result.objects) == 2
    instances = np.zeros_like(labels)
    instances[2:6, 2:6], instances[20:24, 20:24], instances[30:34, 2:6] = 1, 2, 3
    assert len(measure(instances, (0.1, 0.1), "shapes").objects) == 3  # no warning: objects
    assert len(measure(labels, (0.1, 0.1), "shapes", mode="labels").objects) == 2  # as asked
    assert len(measure(labels, (0.1, 0.1), "shapes", class_value=2).objects) == 4


def test_label_ids_beyond_2_to_the_53_stay_exact():
    labels = np.zeros((20, 20), np.uint64)
    labels[2:6, 2:6], labels[10:14, 10:14] = 2**62 + 1, 2**62 + 3
    objects = measure(labels, (0.1, 0.1), "shapes", mode="labels").objects
    assert objects["label"].tolist() == [2**62 + 1, 2**62 + 3]
