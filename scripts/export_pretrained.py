"""Export both shipped models as bioimage.io packages and check them with ``bioimageio test``.

Usage: ``python scripts/export_pretrained.py [--out build/bioimageio]`` (needs the ``[bioimageio]``
extra; runs offline). The packages (about 6-25 MB each) are build outputs: never commit them.
Exits non-zero when any weight format of any package fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

FORMATS = ("pytorch_state_dict", "torchscript", "onnx")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bioimageio", help="folder for the .zip packages")
    parser.add_argument("--models", nargs="+", default=["zdisk-fluo", "mito-em"])
    args = parser.parse_args()

    from bioimageio.core import test_model

    from napari_cardioseg.core.bioimageio_export import default_test_image, export_bioimageio
    from napari_cardioseg.core.models import load_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in args.models:
        model, card = load_model(name)
        start = time.perf_counter()
        path = export_bioimageio(model, card, out / f"{name}.zip", test_image=default_test_image(card))
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, exported in {time.perf_counter() - start:.1f} s")
        for fmt in FORMATS:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                summary = test_model(path, weight_format=fmt)
            print(f"  bioimageio test {fmt}: {summary.status} ({time.perf_counter() - start:.1f} s)")
            if summary.status != "passed":
                failed += 1
                for detail in summary.details:
                    for error in detail.errors:
                        print(f"    {detail.name}: {error.msg}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
