"""Pure NumPy / PyTorch / scikit-image code: never imports Qt, magicgui or napari."""
