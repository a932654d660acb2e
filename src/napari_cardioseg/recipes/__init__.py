"""Reproducible recipes that train the shipped pretrained models.

Run ``python -m napari_cardioseg.recipes zdisk|mito [--data DIR] [--minutes M] [--out DIR]``.
The real training data is research-use and never shipped; see :mod:`.data`.
"""
