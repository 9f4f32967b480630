"""Shared test options: ``--device`` runs the same suite on CUDA on a machine that has one."""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for the tests (cpu, cuda, cuda:1, mps)")


@pytest.fixture(scope="session")
def device(request) -> str:
    name = request.config.getoption("--device")
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip(f"--device {name} asked for, but CUDA is not available")
    return name
