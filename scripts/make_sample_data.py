"""Write the plugin's synthetic sample data (the same seeds as napari's sample menu) to sample_data/."""

from __future__ import annotations

from pathlib import Path

from napari_cardioseg._sample_data import em_sample, zdisk_sample
from napari_cardioseg.core.writes import write_tiff

OUT = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLES = ((zdisk_sample, "zdisk_2d.tif", "zdisk_2d_mask.tif"),
           (em_sample, "em_stack.tif", "em_stack_mito.tif"))


def main() -> None:
    """Generate and write both samples."""
    for make, image_name, truth_name in SAMPLES:
        (image, image_meta, _), (truth, truth_meta, _) = make()
        write_tiff(OUT / image_name, image, image_meta["scale"])
        write_tiff(OUT / truth_name, truth, truth_meta["scale"])
        print(f"wrote {OUT / image_name} and {OUT / truth_name}")


if __name__ == "__main__":
    main()
