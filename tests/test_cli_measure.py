"""``cardioseg measure`` and ``cardioseg evaluate`` end to end on small calibrated TIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_cardioseg.cli import main
from napari_cardioseg.core.table import read_csv
from napari_cardioseg.core.writes import write_tiff


def run_cli(argv: list) -> int:
    """Run ``cardioseg`` through the real dispatcher."""
    return main([str(a) for a in argv])


def test_measure_shapes_writes_both_tables(tmp_path):
    labels = np.zeros((8, 30, 30), np.uint8)
    labels[2:6, 5:15, 5:15] = 1
    labels[1:3, 20:25, 20:28] = 1
    write_tiff(tmp_path / "mito.tif", labels, (0.5, 0.1, 0.1))
    out = tmp_path / "stats.csv"
    assert run_cli(["measure", tmp_path / "mito.tif", "--kind", "shapes", "-o", out]) == 0
    objects = read_csv(out)
    assert len(objects) == 2
    assert sorted(objects["volume_um3"]) == pytest.approx(sorted([400 * 0.005, 80 * 0.005]))
    summary = read_csv(tmp_path / "stats_summary.csv")
    assert summary["count"][0] == 2


def test_measure_zdisk_with_image_cell_mask_and_pixel_size(tmp_path):
    mask = np.zeros((40, 60), np.uint8)
    mask[5:35, 10::20] = 1
    tifffile.imwrite(tmp_path / "z.tif", mask)  # no calibration in the file
    tifffile.imwrite(tmp_path / "img.tif", mask.astype(np.float32))
    tifffile.imwrite(tmp_path / "cell.tif", np.ones_like(mask))
    out = tmp_path / "z.csv"
    args = ["measure", tmp_path / "z.tif", "--kind", "zdisk", "--image", tmp_path / "img.tif",
            "--cell-mask", tmp_path / "cell.tif", "-o", out]
    assert run_cli(args) == 0  # no pixel size anywhere: measured in pixels
    objects = read_csv(out)
    assert "length_um" not in objects.names
    assert objects["length_px"] == pytest.approx([29.0] * 3)
    assert read_csv(tmp_path / "z_summary.csv")["sarcomere_length_spacing_px"][0] == pytest.approx(20)
    assert run_cli([*args, "--pixel-size", "0.1", "0.1", "0.1"]) == 2
    assert run_cli([*args, "--pixel-size", "0.1", "0.1"]) == 0
    objects = read_csv(out)
    assert len(objects) == 3 and objects["length_um"] == pytest.approx([2.9] * 3)
    summary = read_csv(tmp_path / "z_summary.csv")
    assert summary["sarcomere_length_spacing_um"][0] == pytest.approx(2.0)
    assert summary["cell_area_um2"][0] == pytest.approx(40 * 60 * 0.01)


def test_measure_empty_labels_writes_headers(tmp_path, capsys):
    write_tiff(tmp_path / "e.tif", np.zeros((16, 16), np.uint8), (0.2, 0.2))
    out = tmp_path / "e.csv"
    assert run_cli(["measure", tmp_path / "e.tif", "--kind", "zdisk", "-o", out]) == 0
    assert out.read_text().splitlines()[0].startswith("label,length_um")
    assert "0 objects" in capsys.readouterr().out


def test_evaluate_prints_and_writes(tmp_path, capsys):
    gt = np.zeros((10, 10), np.uint8)
    gt[2:6, 2:6] = 1
    pred = np.zeros_like(gt)
    pred[2:6, 2:8] = 1
    ignore = np.zeros_like(gt)
    ignore[:, 6:] = 1
    for name, arr in (("p", pred), ("g", gt), ("i", ignore)):
        write_tiff(tmp_path / f"{name}.tif", arr)
    assert run_cli(["evaluate", tmp_path / "p.tif", tmp_path / "g.tif"]) == 0
    assert "dice" in capsys.readouterr().out
    out = tmp_path / "m.csv"
    assert run_cli(["evaluate", tmp_path / "p.tif", tmp_path / "g.tif", "--ignore",
                    tmp_path / "i.tif", "-o", out]) == 0
    assert read_csv(out)["dice"][0] == 1.0
    write_tiff(tmp_path / "small.tif", np.zeros((5, 5), np.uint8))
    assert run_cli(["evaluate", tmp_path / "p.tif", tmp_path / "small.tif"]) == 2
    assert "differs" in capsys.readouterr().err


def test_measure_one_class(tmp_path):
    labels = np.zeros((30, 30), np.uint8)
    labels[2:6, 2:12] = 1
    labels[10:14, 2:12] = 2
    labels[20:24, 2:6] = 2
    write_tiff(tmp_path / "pred.tif", labels, (0.2, 0.2))
    out = tmp_path / "c2.csv"
    assert run_cli(["measure", tmp_path / "pred.tif", "--kind", "shapes", "--class", "2",
                    "-o", out]) == 0
    assert sorted(read_csv(out)["area_um2"]) == pytest.approx([16 * 0.04, 40 * 0.04])
    assert run_cli(["measure", tmp_path / "pred.tif", "--kind", "shapes", "--class", "5",
                    "-o", out]) != 0


def test_list_columns_prints_units_and_descriptions(capsys):
    assert run_cli(["measure", "--list-columns", "--kind", "shapes"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("sphericity"))
    assert "1 = sphere" in line
    assert "volume_um3" in out and "µm³" in out and "length_um" not in out
    assert run_cli(["measure", "--list-columns"]) == 0
    out = capsys.readouterr().out
    assert "zdisk:" in out and "shapes:" in out and "sarcomere_length_fft_um" in out
    assert run_cli(["measure", "--list-columns", "--kind", "volume"]) == 2
    assert "zdisk, shapes" in capsys.readouterr().err


def test_measure_uncalibrated_shapes_in_voxels_and_huge_ids(tmp_path, capsys):
    labels = np.zeros((6, 20, 20), np.int32)
    labels[1:5, 2:8, 2:8] = 2**31 - 1
    labels[1:4, 12:18, 12:18] = 7
    tifffile.imwrite(tmp_path / "l.tif", labels)  # no pixel size
    out = tmp_path / "s.csv"
    assert run_cli(["measure", tmp_path / "l.tif", "--kind", "shapes", "-o", out,
                    "--min-size", "1"]) == 0
    assert "pixels" in capsys.readouterr().out
    objects = read_csv(out)
    assert sorted(objects["label"]) == [7, 2**31 - 1]
    assert sorted(objects["volume_px3"]) == [108, 144]
    assert not any(n.endswith(("_um", "_um2", "_um3")) for n in objects.names)
    assert "total_volume_px3" in read_csv(tmp_path / "s_summary.csv").names


def test_measure_refuses_unwritable_output_before_measuring(tmp_path, capsys):
    write_tiff(tmp_path / "l.tif", np.ones((8, 8), np.uint8), (0.1, 0.1))
    out = tmp_path / "missing" / "s.csv"
    assert run_cli(["measure", tmp_path / "l.tif", "--kind", "shapes", "-o", out]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_measure_refuses_to_overwrite_an_input(tmp_path, capsys):
    labels = np.zeros((8, 8), np.uint8)
    labels[2:5, 2:5] = 1
    write_tiff(tmp_path / "l.tif", labels, (0.1, 0.1))
    (tmp_path / "link.tif").symlink_to(tmp_path / "l.tif")
    before = (tmp_path / "l.tif").read_bytes()
    assert run_cli(["measure", tmp_path / "l.tif", "--kind", "shapes", "-o",
                    tmp_path / "link.tif"]) == 2
    assert "would destroy the input" in capsys.readouterr().err
    assert (tmp_path / "l.tif").read_bytes() == before
