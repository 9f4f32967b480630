"""The history's validation records and the best-model bookkeeping."""

from __future__ import annotations

from napari_seamless_unet.core.train.history import new_history, record_validation


def _val(score, ap50=None):
    return {"loss": 0.5, "iou": 0.7, "iou_per_class": [0.9, 0.7], "ap50": ap50, "score": score}


def test_best_is_the_highest_finite_score():
    history = new_history()
    best = [record_validation(history, step, _val(score), "instances") for step, score in enumerate([0.5, 0.4, 0.6])]
    assert best == [True, False, True]
    assert (history["best_step"], history["best_score"]) == (2, 0.6)
    assert history["val_step"] == [0, 1, 2] and len(history["val_ap50"]) == 3
    assert not record_validation(history, 3, _val(float("nan")), "instances")
    assert not record_validation(history, 4, _val(None), "instances")
    assert (history["best_step"], history["best_score"]) == (2, 0.6)


def test_semantic_records_no_ap50():
    history = new_history()
    assert record_validation(history, 1, _val(0.3), "semantic")
    assert history["val_ap50"] == [] and history["val_iou"] == [0.7]
