"""Validation metrics: IoU per class, objects matched by IoU (average precision, F1), the ISBI Rand error."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def iou_per_class(prediction: np.ndarray, target: np.ndarray, num_classes: int, valid: np.ndarray | None = None):
    """Intersection over union of each class; ``nan`` for a class absent from both prediction and target.

    Parameters
    ----------
    prediction, target : int arrays of the same shape
        Class ids.
    num_classes : int
        Number of classes.
    valid : bool array, optional
        Pixels to count (annotated ones); default all.
    """
    prediction = np.asarray(prediction).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    if valid is not None:
        keep = np.asarray(valid).ravel()
        prediction, target = prediction[keep], target[keep]
    confusion = np.bincount(target * num_classes + prediction, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    intersection = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def instance_iou_matrix(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU of every (target object, predicted object) pair, from a sparse contingency table.

    Returns an array of shape ``(n_target, n_predicted)`` over the distinct positive ids of each image.
    """
    prediction = np.asarray(prediction).ravel()
    target = np.asarray(target).ravel()
    t_ids, t_inv = np.unique(target, return_inverse=True)
    p_ids, p_inv = np.unique(prediction, return_inverse=True)
    table = sparse.coo_matrix(
        (np.ones(target.size, np.int64), (t_inv, p_inv)), shape=(t_ids.size, p_ids.size)
    ).toarray()
    t_keep, p_keep = t_ids > 0, p_ids > 0
    t_area, p_area = table.sum(1), table.sum(0)
    inter = table[np.ix_(t_keep, p_keep)].astype(np.float64)
    union = t_area[t_keep][:, None] + p_area[p_keep][None, :] - inter
    return inter / np.maximum(union, 1)


def _count_matches(iou: np.ndarray, threshold: float) -> int:
    """Number of (target, predicted) object pairs matched one to one at IoU > ``threshold``."""
    if threshold >= 0.5:  # a match is unique: two objects cannot both overlap one other object by more than half
        return int((iou > threshold).sum())
    else:  # pragma: no cover - lower thresholds need an optimal assignment
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-iou)
        return int((iou[rows, cols] > threshold).sum())


def average_precision(prediction: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    """Object-level ``TP / (TP + FP + FN)`` with objects matched at IoU > ``threshold``.

    For ``threshold >= 0.5`` a match is unique (two objects cannot both overlap one other object by more than
    half), so matching needs no assignment step. Two empty images score 1.
    """
    iou = instance_iou_matrix(prediction, target)
    n_true, n_pred = iou.shape
    if n_true == 0 and n_pred == 0:
        return 1.0
    tp = _count_matches(iou, threshold)
    return tp / (n_true + n_pred - tp)


def match_instances(prediction: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Compare an instance label image with the ground truth: foreground IoU and objects matched by IoU.

    Parameters
    ----------
    prediction, target : int arrays of the same shape
        Instance labels (0 = background, each positive id one object).
    threshold : float
        Objects match when their IoU is above this.

    Returns
    -------
    dict
        ``foreground_iou`` (IoU of the foregrounds, 1 when both are empty), ``matched`` (objects matched),
        ``predicted`` and ``true`` (object counts) and ``f1`` (``2 matched / (predicted + true)``, 1 when both
        are empty).
    """
    foreground = iou_per_class(np.asarray(prediction) > 0, np.asarray(target) > 0, 2)[1]
    iou = instance_iou_matrix(prediction, target)
    n_true, n_pred = iou.shape
    matched = _count_matches(iou, threshold)
    return {
        "foreground_iou": 1.0 if np.isnan(foreground) else float(foreground),
        "matched": matched,
        "predicted": n_pred,
        "true": n_true,
        "f1": 2 * matched / (n_pred + n_true) if n_pred + n_true else 1.0,
    }


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for telling ``positive`` pixels from the others.

    The probability that a random positive scores above a random negative (ties count half): the Mann-Whitney
    U statistic from average ranks. E.g. ``roc_auc(uncertainty_map, prediction != truth)``: how well the
    uncertainty ranks the wrong pixels above the right ones (0.5: no better than chance). ``nan`` when either
    group is empty.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def rand_error(truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """The ISBI 2012 challenge's Rand error: 1 - F-score of the foreground-restricted Rand index.

    Pixel pairs within one segment are counted in the annotated ``truth`` and in the ``prediction``; label 0
    is pruned from both, as the challenge's evaluation does (Fiji's ``RandError.foregroundRestrictedRandIndex``,
    Arganda-Carreras et al. 2015, *Front. Neuroanat.* 9:142; the SNEMI3D ``adapted_rand``): the truth's label 0
    (annotated membrane) is not scored, and a predicted label-0 pixel (predicted membrane) joins no pair, so it
    costs recall where it falls inside a cell but merges nothing. ``skimage.metrics.adapted_rand_error`` instead
    treats a prediction's label 0 as one more segment, which merges every cell that such a pixel touches.

    Parameters
    ----------
    truth, prediction : int arrays of the same shape
        Segment ids (for a membrane map: the connected components of the cells), 0 = boundary.

    Returns
    -------
    dict
        ``error`` (1 - F-score), ``precision`` and ``recall`` of the pairs.
    """
    truth = np.asarray(truth).ravel()
    prediction = np.asarray(prediction).ravel()
    if truth.shape != prediction.shape:
        raise ValueError(f"truth and prediction differ in size: {truth.size} and {prediction.size} pixels")
    scored = truth != 0
    t, p = truth[scored].astype(np.int64), prediction[scored].astype(np.int64)
    if t.size == 0:
        return {"error": 0.0, "precision": 1.0, "recall": 1.0}

    def pairs(counts: np.ndarray) -> float:
        counts = counts.astype(np.float64)
        return float(np.sum(counts * (counts - 1) / 2))

    _, true_sizes = np.unique(t, return_counts=True)
    inside = p != 0
    _, predicted_sizes = np.unique(p[inside], return_counts=True)
    joint = np.unique(np.stack([t[inside], p[inside]]), axis=1, return_counts=True)[1]
    both, true_pairs, predicted_pairs = pairs(joint), pairs(true_sizes), pairs(predicted_sizes)
    precision = both / predicted_pairs if predicted_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"error": 1.0 - f_score, "precision": precision, "recall": recall}
