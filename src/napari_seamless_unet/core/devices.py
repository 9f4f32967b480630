"""Device choice (CUDA, then MPS, then CPU), memory budgets and numeric precision."""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator

import torch

from .errors import UNetInputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def available_devices() -> list[str]:
    """Devices this machine offers, best first: ``cuda:N`` for each GPU, ``mps``, ``cpu``."""
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return [*devices, "cpu"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA, then MPS, then CPU; anything else is checked to exist."""
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UNetInputError(f"unknown device {device!r}; use one of {available_devices()} or 'auto'.") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UNetInputError(f"device {device!r} asked for, but CUDA is not available here; use 'cpu' or 'auto'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UNetInputError(f"device {device!r} does not exist; available: {available_devices()}.")
    if dev.type == "mps" and str(dev) not in available_devices():
        raise UNetInputError(f"device {device!r} asked for, but MPS is not available here; use 'cpu' or 'auto'.")
    return dev


def _available_host_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def memory_budget(device: torch.device) -> int:
    """Bytes that one batch of tiles may take on ``device``.

    On CUDA, 70% of the free memory; on CPU and MPS, a quarter of the available host memory, at most 4 GiB,
    so that prediction leaves room for the viewer and the image itself.
    """
    env = os.environ.get("SEAMLESS_UNET_MEMORY_BUDGET_MB")
    if env:
        return int(float(env) * 2**20)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.7)
    return int(min(_available_host_memory() / 4, 4 * 2**30))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    if os.environ.get("SEAMLESS_UNET_CPU_BF16") in ("0", "1"):
        return os.environ["SEAMLESS_UNET_CPU_BF16"] == "1"
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


# On a CPU, bf16 pays off only where convolutions are compute-bound, i.e. for large tiles of wide networks: the
# paper network on 1212x1212 tiles (2.2 TFLOP a tile) ran 4x faster, a 16-channel network on a 2128x2128 tile
# (about 0.4 TFLOP) 1.7x faster, but the same network on a 600x600 tile (30 GFLOP) slower (benchmarks/README.md).
CPU_BF16_MIN_TILE_GFLOP = 100.0


def autocast_dtype(
    device: torch.device, precision: str = "auto", tile_gflop: float | None = None
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or ``None`` for plain float32.

    ``auto`` means, on CUDA, what the device itself runs natively (:func:`cuda_fast_dtype`: bf16 from Ampere on,
    fp16 on Volta/Turing, where training adds a gradient scaler); on CPUs that compute bf16 natively, bf16 when one
    forward pass (``tile_gflop``, in GFLOP) is large enough to be compute-bound; fp32 elsewhere. bf16 labels agreed
    with fp32 on 99.97% of the pixels of a trained model (benchmarks/README.md).
    """
    if precision not in PRECISIONS:
        raise UNetInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return cuda_fast_dtype(device)
        big = tile_gflop is not None and tile_gflop >= CPU_BF16_MIN_TILE_GFLOP
        if device.type == "cpu" and big and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    if precision == "fp16" and device.type == "cpu":
        warnings.warn("fp16 autocast is slow or unsupported on CPU; using bf16 instead", stacklevel=3)
        return torch.bfloat16
    return torch.bfloat16 if precision == "bf16" else torch.float16


# What PyTorch's allocators say when an allocation fails: CUDA and MPS ("out of memory"), the CPU allocator
# ("DefaultCPUAllocator: can't allocate memory: you tried to allocate ..."), and the OS ("Cannot allocate memory").
_OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


@contextlib.contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
    """cuDNN's kernel autotuner (``torch.backends.cudnn.benchmark``) for the calls inside; the caller's flag is put
    back afterwards, so a prediction or training step never changes torch's global settings."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=cudnn.enabled, benchmark=True, deterministic=cudnn.deterministic, allow_tf32=cudnn.allow_tf32
    ):
        yield


def cuda_fast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision that ``device`` (not the default GPU) computes natively on its tensor cores.

    bf16 from compute capability 8.0 (Ampere) on; fp16 on Volta and Turing (7.x), where bf16 is only emulated
    (``torch.cuda.is_bf16_supported()`` says yes there too, but it is slower than fp32); float32 on older GPUs.
    """
    major, _ = torch.cuda.get_device_capability(device)
    if major >= 8:
        return torch.bfloat16
    if major == 7:
        return torch.float16
    return None


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says that memory ran out, on a GPU or on the CPU (also numpy's ``MemoryError``)."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    message = str(err).lower()
    return isinstance(err, RuntimeError) and any(text in message for text in _OUT_OF_MEMORY_MESSAGES)
