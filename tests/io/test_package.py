"""The io package is light: importing it loads neither torch nor napari nor Qt."""

from __future__ import annotations

import subprocess
import sys


def test_importing_io_imports_no_torch_napari_or_qt():
    code = (
        "import sys, napari_seamless_unet.io; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'napari', 'qtpy', 'PyQt5', 'PySide2'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
