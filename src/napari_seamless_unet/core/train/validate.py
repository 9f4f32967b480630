"""Validation during training: whole held-out planes through the prediction code, scored."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ..metrics import average_precision, iou_per_class
from ..model import UNet
from ..postprocess import label_foreground, label_three_classes
from ..predict import iter_predict
from ..progress import run
from .data import Plane


def validate(model: UNet, planes: list[Plane], device: torch.device) -> dict[str, Any]:
    """Predict whole validation planes with the prediction code (no gradients) and score them.

    Returns ``loss`` (weighted like training), ``iou_per_class``, ``iou`` (foreground for instances, the mean
    for semantic), ``ap50`` (instances, on fully annotated planes; else None) and ``score``, the number the best
    model is chosen by: ``ap50`` where there is one, else ``iou``. Leaves the model in training mode.

    The objects scored by ``ap50`` are the connected components of the argmax foreground (two classes), or
    (three classes) the interiors grown into their borders as
    :func:`~napari_seamless_unet.core.postprocess.label_three_classes` does at threshold 0.5, without filling
    holes. A three-class model's ``iou`` is that of the foreground too (interior and border against background).
    """
    losses, counts, aps = 0.0, 0, []
    confusion_iou, foreground_iou = [], []
    three = model.task == "instances" and model.num_classes == 3
    for plane in planes:
        spatial = "ZYX"[-(plane.raw.ndim - 1) :]  # a plane (C, Y, X) or, for a 3D network, a volume (C, Z, Y, X)
        axes = "C" + spatial if plane.raw.shape[0] > 1 else spatial
        raw = plane.raw if plane.raw.shape[0] > 1 else plane.raw[0]
        gen = iter_predict(model, raw, axes=axes, device=device, output="probabilities", name=plane.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs = run(gen)
        prob = torch.from_numpy(probs)
        target = torch.from_numpy(plane.target)
        weight = torch.from_numpy(plane.weight)
        nll = -torch.log(prob.gather(0, target[None]).clamp_min(1e-8))[0]
        losses += float((nll * weight).sum())
        counts += int((weight > 0).sum())
        pred = probs.argmax(0)
        confusion_iou.append(iou_per_class(pred, plane.target, model.num_classes, plane.valid))
        if three:
            foreground_iou.append(iou_per_class(pred > 0, plane.target > 0, 2, plane.valid)[1])
        region = plane.scored or (slice(None),) * plane.target.ndim
        if model.task == "instances" and plane.valid[region].all():
            if three:
                found = label_three_classes(probs[1][region], probs[2][region], fill_holes=False)
            else:
                found = label_foreground(pred[region] == 1)
            aps.append(average_precision(found, plane.objects[region]))
    model.train()
    per_class = np.nanmean(np.stack(confusion_iou), axis=0) if confusion_iou else np.array([])
    result = {"loss": losses / max(1, counts), "iou_per_class": [float(x) for x in per_class]}
    if model.task == "instances":
        if three:
            result["iou"] = float(np.nanmean(foreground_iou)) if foreground_iou else float("nan")
        else:
            result["iou"] = float(per_class[1]) if per_class.size > 1 else float("nan")
        result["ap50"] = float(np.mean(aps)) if aps else None
        result["score"] = result["ap50"] if aps else result["iou"]
    else:
        result["iou"] = float(np.nanmean(per_class))
        result["score"] = result["iou"]
    return result
