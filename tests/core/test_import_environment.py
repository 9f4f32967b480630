"""Importing the package turns on torch's huge-page allocation on Linux, unless the user chose otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="huge pages are a Linux switch")

PROBE = "import os, napari_seamless_unet; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"


def imported_value(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_turns_on_huge_pages_before_torch_allocates():
    assert imported_value(None) == "1"


def test_import_keeps_the_users_choice():
    assert imported_value("0") == "0"


def test_import_does_not_import_torch():
    # The switch only works when set before torch's first allocation, so the package import must stay light.
    probe = "import sys, napari_seamless_unet; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
