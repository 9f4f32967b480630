"""``python -m napari_seamless_unet``: the ``seamless-unet`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
