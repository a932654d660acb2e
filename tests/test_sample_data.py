"""The files in sample_data/ are exactly what the generators make now, with their calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_cardioseg._sample_data import em_sample, zdisk_sample
from napari_cardioseg.core.io import read_image

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.mark.parametrize("make,image_name,truth_name", [
    (zdisk_sample, "zdisk_2d.tif", "zdisk_2d_mask.tif"),
    (em_sample, "em_stack.tif", "em_stack_mito.tif"),
])
def test_files_match_generator(make, image_name, truth_name):
    (image, meta, kind), (truth, truth_meta, truth_kind) = make()
    assert (kind, truth_kind) == ("image", "labels")
    assert meta["scale"] == truth_meta["scale"] and all(s < 1 for s in meta["scale"])
    for name, data in ((image_name, image), (truth_name, truth)):
        (stored,) = read_image(SAMPLES / name)
        np.testing.assert_array_equal(stored.data, data)
        np.testing.assert_allclose(stored.scale, meta["scale"], rtol=1e-6)
