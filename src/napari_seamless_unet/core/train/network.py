"""What a run trains with: the seeded random generators, the network, its precision and its optimizer."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from ..devices import autocast_dtype
from ..model import UNet
from ..normalization import Normalization
from .config import DEFAULT_LEARNING_RATE, SGD_MOMENTUM, TrainConfig


def seeded_generator(seed: int | None) -> torch.Generator:
    """Seed torch's global RNG (weights, dropout) with ``seed`` and return the augmentation's generator (seed + 1).

    Without a seed the generator is seeded from the operating system.
    """
    generator = torch.Generator()
    if seed is not None:
        torch.manual_seed(int(seed))
        generator.manual_seed(int(seed) + 1)
    else:
        generator.seed()
    return generator


def build_model(
    config: TrainConfig,
    payload: dict[str, Any] | None,
    in_channels: int,
    num_classes: int,
    normalization: Normalization,
) -> UNet:
    """A new network for ``config`` (initialised from torch's global RNG), or the one in a resumed file."""
    if payload:
        model = UNet(**payload["config"])
        model.load_state_dict(payload["state_dict"])
        return model
    return UNet(
        in_channels,
        num_classes,
        int(config.base_channels),
        int(config.depth),
        float(config.dropout),
        task=config.task,
        normalization=normalization,
        class_names=None if config.task == "semantic" else ["background", "foreground"],
    )


@dataclass
class Precision:
    """Memory layout, autocast dtype and gradient scaling of a run on one device."""

    channels_last: bool
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def choose(cls, device: torch.device, precision: str) -> Precision:
        # Channels-last picks the fast oneDNN/cuDNN convolution kernels on both CPU and CUDA. Autocast only on CUDA
        # by default: on CPUs bf16 training was slower for the small networks people train there, and its first
        # steps in a non-main thread (the viewer's worker) took 30x longer (benchmarks/README.md).
        channels_last = device.type in ("cuda", "cpu")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if device.type == "cuda" or (device.type == "cpu" and precision in ("bf16", "fp16")):
            amp_dtype = autocast_dtype(device, precision)
        else:
            amp_dtype = None
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        return cls(channels_last, amp_dtype, scaler)

    def place(self, model: UNet, device: torch.device) -> UNet:
        """The model on ``device``, in the memory layout chosen."""
        model = model.to(device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def autocast(self, device: torch.device) -> AbstractContextManager:
        return torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()


def make_optimizer(model: UNet, config: TrainConfig) -> tuple[torch.optim.Optimizer, float]:
    """The optimizer ``config`` asks for and its learning rate (the default for the optimizer when unset)."""
    lr = config.learning_rate or DEFAULT_LEARNING_RATE[config.optimizer]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=SGD_MOMENTUM, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    return optimizer, lr
