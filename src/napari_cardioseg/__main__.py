"""``python -m napari_cardioseg``: the ``cardioseg`` command."""

import sys

from .cli import main

sys.exit(main())
