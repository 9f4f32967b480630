"""precision="auto" asks the device the model runs on what it computes natively."""

from __future__ import annotations

import pytest
import torch

from napari_seamless_unet.core import devices


@pytest.fixture
def gpus(monkeypatch):
    """Two fake GPUs: cuda:0 an Ampere (8.0), cuda:1 a Turing (7.5) that only emulates bf16."""
    capability = {0: (8, 0), 1: (7, 5), 2: (6, 1)}

    def get_device_capability(device=None):
        index = 0 if device is None else torch.device(device).index or 0
        return capability[index]

    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what emulating GPUs answer too
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_auto_uses_bf16_only_where_the_gpu_runs_it_natively(gpus):
    assert devices.autocast_dtype(torch.device("cuda:0"), "auto") == torch.bfloat16
    assert devices.autocast_dtype(torch.device("cuda:1"), "auto") == torch.float16  # not the default GPU's answer
    assert devices.autocast_dtype(torch.device("cuda:2"), "auto") is None  # Pascal: float32


def test_explicit_precision_wins(gpus):
    assert devices.autocast_dtype(torch.device("cuda:1"), "bf16") == torch.bfloat16
    assert devices.autocast_dtype(torch.device("cuda:0"), "fp32") is None


def test_cpu_auto_needs_native_bf16_and_a_large_tile(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    cpu = torch.device("cpu")
    assert devices.autocast_dtype(cpu, "auto", tile_gflop=10 * devices.CPU_BF16_MIN_TILE_GFLOP) == torch.bfloat16
    assert devices.autocast_dtype(cpu, "auto", tile_gflop=devices.CPU_BF16_MIN_TILE_GFLOP / 10) is None
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.autocast_dtype(cpu, "auto", tile_gflop=10 * devices.CPU_BF16_MIN_TILE_GFLOP) is None
