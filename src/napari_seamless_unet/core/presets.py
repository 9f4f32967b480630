"""Network size presets shared by the widgets and the command line."""

from __future__ import annotations

#: name -> (base_channels, depth). "paper" is the network of Ronneberger et al. 2015 (a GPU trains it in
#: minutes); "small" and "tiny" train on a laptop CPU.
NETWORK_PRESETS: dict[str, tuple[int, int]] = {"tiny": (8, 2), "small": (16, 3), "medium": (32, 4), "paper": (64, 4)}


def preset_label(name: str) -> str:
    """A human label such as ``"small (16 channels, depth 3)"``."""
    base, depth = NETWORK_PRESETS[name]
    return f"{name} ({base} channels, depth {depth})"
