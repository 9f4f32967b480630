"""What a run trains with: its own random streams, the network, its precision and its optimizer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from ..devices import autocast_dtype, cpu_has_native_bf16
from ..instances import INSTANCE_CLASS_NAMES
from ..model import UNet
from ..normalization import Normalization
from .config import SGD_MOMENTUM, TrainConfig


class RandomStreams:
    """The run's own random numbers, apart from the caller's.

    Weight initialisation and dropout draw from torch's default generators; the run swaps its own states in for
    each step (``torch.random.fork_rng``) and the caller's back out, so a seeded run is reproducible whatever
    else uses torch's RNG between steps (a viewer, another model), and the caller's random state is untouched.
    Augmentation draws from a separate generator (seed + 1).

    Parameters
    ----------
    seed : int, optional
        Without a seed, the streams are seeded from the operating system.
    device : torch.device
        The training device (its CUDA generator is the run's own too).
    """

    def __init__(self, seed: int | None, device: torch.device):
        self.device = device
        self.augment = torch.Generator()
        self._cuda = device.type == "cuda"
        with self._forked():
            if seed is None:
                torch.random.default_generator.seed()
                self.augment.seed()
                if self._cuda:
                    torch.cuda.default_generators[self._index].seed()
            else:
                torch.random.default_generator.manual_seed(int(seed))
                self.augment.manual_seed(int(seed) + 1)
                if self._cuda:
                    torch.cuda.default_generators[self._index].manual_seed(int(seed))
            self._save()

    @property
    def _index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def _forked(self):
        return torch.random.fork_rng(devices=[self._index] if self._cuda else [])

    def _save(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(self._index) if self._cuda else None

    @contextmanager
    def active(self) -> Iterator[None]:
        """Inside: torch's default generators hold the run's states; outside: the caller's, as they were."""
        with self._forked():
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self._index)
            try:
                yield
            finally:
                self._save()

    def state(self) -> dict[str, Any]:
        """For a checkpoint (the keys of format-1 checkpoints: ``torch``, ``augment``, ``cuda``)."""
        state = {"torch": self.cpu, "augment": self.augment.get_state()}
        if self.cuda is not None:
            state["cuda"] = self.cuda
        return state

    def load(self, state: dict[str, Any]) -> None:
        if "torch" in state:
            self.cpu = state["torch"]
        if "augment" in state:
            self.augment.set_state(state["augment"])
        if "cuda" in state and self._cuda:
            self.cuda = state["cuda"]


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
        class_names=None if config.task == "semantic" else list(INSTANCE_CLASS_NAMES[num_classes]),
        batch_norm=bool(config.batch_norm),
        ndim=int(config.ndim),
        voxel_size=config.voxel_size,
        members=int(config.members or 1),
    )


def training_autocast_dtype(device: torch.device, precision: str, ndim: int = 2) -> torch.dtype | None:
    """The autocast dtype of training, None for float32.

    ``auto``: on CUDA what the device runs natively; on a CPU with native bf16, bf16 for 3D networks only (a 3D
    training step took 0.4-0.5x the float32 time there: 38 against 96 ms for 8/2 on 28x72x72, benchmarks/README.md,
    "3D"), while 2D training stays float32 here: ``train.defaults.resolve`` sets the precision to "bf16" itself
    for a 2D network where the budget probe measures bf16 faster, or (a network it does not time) where the network
    is large enough (``defaults.BF16_MIN_STEP_GFLOP``).
    """
    if device.type == "cuda" or (device.type == "cpu" and precision in ("bf16", "fp16")):
        return autocast_dtype(device, precision)
    if device.type == "cpu" and precision == "auto" and int(ndim) == 3 and cpu_has_native_bf16():
        return torch.bfloat16
    return None


@dataclass
class Precision:
    """Memory layout, autocast dtype and gradient scaling of a run on one device."""

    channels_last: bool
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def choose(cls, device: torch.device, precision: str, ndim: int = 2) -> Precision:
        # Channels-last picks the fast oneDNN/cuDNN convolution kernels on both CPU and CUDA.
        channels_last = device.type in ("cuda", "cpu") and ndim == 2  # 3D: layers.Conv3d picks its own layout
        amp_dtype = training_autocast_dtype(device, precision, ndim)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        return cls(channels_last, amp_dtype, scaler)

    def place(self, model: UNet, device: torch.device) -> UNet:
        """The model on ``device``, in the memory layout chosen."""
        model = model.to(device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def autocast(self, device: torch.device) -> AbstractContextManager:
        return torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters) -> bool:
        """Backpropagate and update; False (and no update) when a gradient is not finite.

        With fp16 the gradient scaler already skips such steps (and lowers its scale), so only float32 and bf16
        need the check: one fused norm over all gradients.
        """
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            return True
        loss.backward()
        if not gradients_finite(parameters):
            return False
        optimizer.step()
        return True


def gradients_finite(parameters) -> bool:
    """Whether every gradient is finite: one fused norm over all of them."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return not grads or bool(torch.isfinite(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))))


def make_optimizer(model: UNet, config: TrainConfig) -> tuple[torch.optim.Optimizer, float]:
    """The optimizer ``config`` asks for and its learning rate (the default for the optimizer when unset)."""
    lr = float(config.learning_rate)  # resolved by train.defaults (the optimizer's default when unset)
    parameters = list(model.parameters())
    kw = {"lr": lr, "weight_decay": config.weight_decay, **fused_if_supported(parameters)}
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, momentum=SGD_MOMENTUM, **kw), lr
    return torch.optim.Adam(parameters, **kw), lr


def fused_if_supported(parameters) -> dict[str, bool]:
    """``{"fused": True}`` where torch has a fused update kernel for the parameters' device (CPU, CUDA).

    One kernel for all parameters instead of a handful of operations per tensor: on the 2-core CPU of
    benchmarks/README.md, Adam for the 16-channel depth-2 network took 0.33 ms instead of 1.7 ms, 0.76 instead of
    3.8 at depth 3, 27 instead of 92 for the paper network ("Training throughput").
    """
    types = {p.device.type for p in parameters}
    return {"fused": True} if types and types <= {"cpu", "cuda"} else {}
