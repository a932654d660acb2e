"""napari-cardioseg: segment and measure Z-disks and mitochondria."""

__version__ = "0.1.0"
