"""Starter models that ship with the package: small networks to fine-tune instead of starting from random weights.

Each is trained by ``scripts/train_starter_models.py`` (the command and its figures are in benchmarks/README.md)
and stored as a model file in ``napari_seamless_unet/starter_models/``, with its training data's description and
citation in the file's metadata. ``train(images, labels, init="nuclei")`` starts from one;
``load_starter("em-membranes")`` loads one to predict with.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .errors import ModelFileError

ISBI_2012_CITATION = (
    "Cardona A, Saalfeld S, Preibisch S, Schmid B, Cheng A, Pulokas J, Tomancak P, Hartenstein V (2010). An "
    "integrated micro- and macroarchitectural analysis of the Drosophila brain by computer-assisted serial "
    "section electron microscopy. PLoS Biology 8(10): e1000502. doi:10.1371/journal.pbio.1000502; "
    "Arganda-Carreras I, Turaga SC, Berger DR, et al. (2015). Crowdsourcing the creation of image segmentation "
    "algorithms for connectomics. Frontiers in Neuroanatomy 9: 142. doi:10.3389/fnana.2015.00142"
)


@dataclass(frozen=True)
class StarterModel:
    """A model shipped with the package."""

    name: str
    file: str
    description: str
    task: str
    trained_on: str
    citation: str | None = None


STARTERS: dict[str, StarterModel] = {
    model.name: model
    for model in (
        StarterModel(
            name="nuclei",
            file="nuclei.unet.pt",
            description="nuclei in fluorescence images: touching objects separated (instances, 2 classes and the "
            "weight map)",
            task="instances",
            trained_on="synthetic clustered nuclei of varied size, brightness and blur with noise "
            "(napari_seamless_unet.core.synthetic.clustered_nuclei), made by the training script",
        ),
        StarterModel(
            name="em-membranes",
            file="em-membranes.unet.pt",
            description="cell membranes in electron microscopy of neural tissue (semantic: membrane, cell)",
            task="semantic",
            trained_on="ISBI 2012 EM segmentation challenge training set, slices 0-19 (serial section TEM of the "
            "Drosophila first instar larva ventral nerve cord); slices 20-24 kept for testing",
            citation=ISBI_2012_CITATION,
        ),
    )
}


def starter_models() -> dict[str, str]:
    """The names of the starter models this installation ships, and what each segments.

    :data:`STARTERS` is the catalogue; a model whose file has not been trained into this installation yet (the
    EM membranes model needs ``../shared/data/isbi2012`` and ``scripts/train_starter_models.py --only em-membranes``)
    is left out.
    """
    return {name: model.description for name, model in STARTERS.items() if _file(name).is_file()}


def _file(name: str) -> Path:
    return Path(str(resources.files("napari_seamless_unet") / "starter_models" / STARTERS[name].file))


def starter_path(name: str) -> Path:
    """The file of starter model ``name``; raises :class:`ModelFileError` for an unknown name or a missing file."""
    if name not in STARTERS:
        known = ", ".join(repr(n) for n in STARTERS)
        raise ModelFileError(f"there is no starter model {name!r}; the starter models are {known}.")
    path = _file(name)
    if not path.is_file():
        raise ModelFileError(
            f"the starter model {name!r} is missing from this installation ({path}); reinstall napari-seamless-unet, "
            f"or train it with scripts/train_starter_models.py."
        )
    return path


def load_starter(name: str, device: str | torch.device | None = "cpu"):
    """Starter model ``name`` as a :class:`~napari_seamless_unet.core.model.UNet` in eval mode.

    Parameters
    ----------
    name : str
        One of :func:`starter_models`: ``"nuclei"`` or ``"em-membranes"``.
    device : str or torch.device, optional
        Where to put it.
    """
    from .model_io import load_model

    model = load_model(starter_path(name), device)
    model.source_path = f"starter:{name}"
    return model
