"""Thin napari widgets: each connects layers to core functions and nothing more."""
