"""Thin napari widgets: each connects layers to core functions and nothing more.

Importing this package keeps ``triton`` out of the napari process (unless something loaded it
already): torch imports it lazily (through torchvision and ``torch._dynamo``, e.g. when a
segmentation-models-pytorch net is built in a worker), and triton's LLVM loaded after a viewer's
Mesa (llvmpipe) OpenGL context exists crashes the process. The widgets never compile with triton.
"""

import sys

sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
