"""The Train widget's settings beyond the pairs and the schedule: the network's dimensions (2D or 3D, shown in the
main form) and the advanced settings (network, augmentation, schedule, validation), in collapsed sections.

Each setting maps onto a :class:`~napari_seamless_unet.core.train.TrainConfig` field; "auto" (or 0) leaves the
field to the trainer, which chooses it for the device and the time limit (``core/train/defaults.py``).
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from ..core.augment import Augmentation
from ..core.presets import NETWORK_PRESETS, preset_label
from ..core.train import TrainConfig
from ._common import device_choices
from ._ui import section

#: Network sizes: label -> preset name ("auto": chosen for the device and time limit), largest preset first.
PRESETS = {"auto (chosen for the device and time limit)": "auto"} | {
    preset_label(name): name for name in reversed(NETWORK_PRESETS)
}
#: The network's dimensions (TrainConfig.ndim): 3D only for image layers with a Z axis.
DIMENSIONS = {"2D (planes)": 2, "3D (volumes; slow on a CPU)": 3}
#: What an instance network learns (TrainConfig.instance_classes); benchmarks/README.md compares them.
INSTANCE_OUTPUTS = {"2 classes and the weight map (the paper's)": 2, "3 classes: interior and border": 3}


class AdvancedSettings:
    """The widgets of the advanced settings and the :class:`TrainConfig` fields they stand for."""

    WIDGETS = (
        "dimensions",
        "preset",
        "device",
        "instance_output",
        "members",
        "elastic",
        "flips",
        "rotation",
        "intensity",
        "learning_rate",
        "batch_size",
        "tile_size",
        "validation_share",
        "val_every",
        "preview_on",
        "preview_every",
    )

    def __init__(self):
        defaults = TrainConfig()
        augmentation = Augmentation()
        self.dimensions = ComboBox(
            label="dimensions",
            choices=list(DIMENSIONS.items()),
            value=2,
            enabled=False,
            tooltip="2D: a network for planes, trained on every annotated plane (the paper's); 3D: a network for "
            "volumes, for images with a Z axis (the voxel size is the image layer's scale along Z, Y, X)",
        )
        self.preset = ComboBox(label="size", choices=list(PRESETS.items()), value="auto")
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        self.instance_output = ComboBox(
            label="instances as",
            choices=list(INSTANCE_OUTPUTS.items()),
            value=defaults.instance_classes,
            tooltip="instance task: background and foreground with a gap between touching objects (the paper's), "
            "or background, object interior and object border",
        )
        self.members = SpinBox(
            label="members",
            min=0,
            max=16,
            value=0,
            tooltip="networks trained side by side that predict together (an ensemble; each step and each prediction "
            "that many times slower); 0 = automatic (2 for a semantic task where the time limit buys one network "
            "10000 steps, else 1)",
        )
        self.elastic = FloatSpinBox(
            label="elastic (px)",
            min=0.0,
            max=100.0,
            value=augmentation.elastic_std,
            tooltip="elastic deformation: standard deviation of the displacements, in pixels; 0 = off",
        )
        self.flips = CheckBox(text="flips and 90° turns", value=augmentation.flip and augmentation.rotate90)
        self.rotation = FloatSpinBox(
            label="rotation (°)", min=0.0, max=180.0, value=augmentation.rotation, tooltip="largest random rotation"
        )
        self.intensity = FloatSpinBox(
            label="intensity",
            min=0.0,
            max=1.0,
            step=0.05,
            value=augmentation.contrast,
            tooltip="random contrast and gamma changes up to ± this, brightness up to ± half of it; 0 = off",
        )
        self.learning_rate = FloatSpinBox(
            label="learning rate",
            min=0.0,
            max=1.0,
            step=1e-4,
            value=0.0,
            tooltip="0 = the default (1e-3); lower it if training diverges",
        )
        self.learning_rate.native.setDecimals(5)
        self.batch_size = SpinBox(
            label="batch size", min=0, max=256, value=0, tooltip="tiles per step; 0 = automatic (1 on a CPU)"
        )
        self.tile_size = SpinBox(
            label="tile size", min=0, max=4096, value=0, tooltip="training input tile side in pixels; 0 = automatic"
        )
        self.validation_share = SpinBox(
            label="validation (%)",
            min=0,
            max=90,
            value=round(100 * defaults.validation_fraction),
            tooltip="share of each annotated plane (a strip at its end) held out to measure the score",
        )
        self.val_every = SpinBox(
            label="validate every", min=0, max=100_000, value=0, tooltip="steps between validations; 0 = automatic"
        )
        self.preview_on = CheckBox(text="live prediction preview", value=True)
        self.preview_every = SpinBox(
            label="preview every", min=0, max=100_000, value=25, tooltip="steps between prediction previews; 0 = off"
        )
        self.sections = {}
        self.sections["network"], _ = section("Network", [self.preset, self.device, self.instance_output, self.members])
        self.sections["augmentation"], _ = section(
            "Augmentation", [self.elastic, self.flips, self.rotation, self.intensity]
        )
        self.sections["schedule"], _ = section("Schedule", [self.learning_rate, self.batch_size, self.tile_size])
        self.sections["validation"], _ = section(
            "Validation", [self.validation_share, self.val_every, self.preview_on, self.preview_every]
        )

    def config_values(self, task: str) -> dict:
        """The TrainConfig fields these settings give for ``task`` (None where the trainer chooses)."""
        intensity = float(self.intensity.value)
        return {
            "ndim": int(self.dimensions.value),
            "instance_classes": int(self.instance_output.value) if task == "instances" else 2,
            "preset": None if self.preset.value == "auto" else self.preset.value,
            "members": int(self.members.value) or None,
            "device": None if self.device.value == "auto" else self.device.value,
            "elastic_std": float(self.elastic.value),
            "flip": bool(self.flips.value),
            "rotate90": bool(self.flips.value),
            "rotation": float(self.rotation.value),
            "contrast": intensity,
            "brightness": intensity / 2,
            "gamma": intensity,
            "learning_rate": float(self.learning_rate.value) or None,
            "batch_size": int(self.batch_size.value) or None,
            "tile_size": int(self.tile_size.value) or None,
            "validation_fraction": int(self.validation_share.value) / 100,
            # 0: the trainer's automatic cadence (about a twentieth of the time goes to validation).
            "val_every": int(self.val_every.value) or None,
        }
