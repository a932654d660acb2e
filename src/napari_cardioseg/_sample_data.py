"""npe2 sample data: synthetic images made on the fly with fixed seeds (exact ground truth included)."""

from __future__ import annotations

import numpy as np

from .core.synth import ZdiskParams, organelle_stack, zdisk_image

ZDISK_SHAPE, ZDISK_PARAMS, ZDISK_SEED = (512, 512), ZdiskParams(pixel_size=0.1, sarcomere_length=1.8), 1
EM_SHAPE, EM_VOXEL, EM_SEED = (32, 256, 256), (0.02, 0.008, 0.008), 2


def zdisk_sample() -> list[tuple]:
    """Return a 2D fluorescence-like Z-disk image (uint16, 0.1 µm/px) and its Z-disk mask."""
    s = zdisk_image(ZDISK_SHAPE, ZDISK_PARAMS, seed=ZDISK_SEED, dtype=np.uint16)
    scale = (s.pixel_size, s.pixel_size)
    meta = {"synthetic": True, "sarcomere_length_um": s.sarcomere_length,
            "myofibril_axis_deg": s.orientation}
    return [
        (s.image, {"name": "zdisk sample", "scale": scale, "metadata": meta}, "image"),
        (s.mask, {"name": "zdisk sample truth", "scale": scale, "metadata": meta}, "labels"),
    ]


def em_sample() -> list[tuple]:
    """Return a 3D FIB-SEM-like stack (uint8, 20×8×8 nm voxels) and its mitochondria labels."""
    s = organelle_stack(EM_SHAPE, EM_VOXEL, seed=EM_SEED)
    meta = {"synthetic": True}
    return [
        (s.image, {"name": "EM sample", "scale": s.voxel_size, "metadata": meta}, "image"),
        (s.labels, {"name": "EM sample mitochondria", "scale": s.voxel_size, "metadata": meta}, "labels"),
    ]
