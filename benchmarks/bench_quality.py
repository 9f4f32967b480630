"""Segmentation quality of a default training: what a new user gets with only a time budget.

Trains with ``TrainConfig(task=..., time_budget=..., device=...)`` and nothing else on three data sets, and
prints a table:

- **ISBI 2012** (``../shared/data/isbi2012``): semantic membrane/cell segmentation; slices 0-19 train, 20-24
  test. Pixel error and the challenge's Rand error (1 - F-score of the foreground-restricted Rand index,
  ``core.metrics.rand_error``) of the connected components of the cells (4-connectivity) on the test slices, each
  at the best threshold of the cell probability (0.05 to 0.95 in steps of 0.05, then 0.96 to 0.99), as the
  challenge scored them, and the best Rand error up to 0.95 (the grid before 2026-12-07); also skimage's
  ``adapted_rand_error`` of the same components (the predicted membrane one more segment, a harsher count) and
  the Rand error of those components grown over the predicted membrane to the nearest cell ("cells grown").
- **Touching discs** (``core.synthetic.touching_discs``): instances; two 256x256 images train, two others test.
- **Clustered nuclei** (``core.synthetic.clustered_nuclei``): instances; clusters of touching nuclei of varied
  size, brightness and blur with Poisson noise; three 512x512 images train, two others test.

For the instance sets: AP@0.5 (matched / (matched + false + missed), IoU > 0.5) and the mean IoU of the matched
objects, from :func:`napari_seamless_unet.segment` with its default post-processing. ``--set instance_classes=3``
trains the three-class instance network (background, interior, border) instead of the paper's two classes.

``--ceiling`` trains nothing: it labels the perfect training targets of the two instance representations (the
two-class foreground with its gap between touching objects, given back by ``restore_borders``; the three-class
interior and border) with :func:`napari_seamless_unet.instances_from_probabilities` at its defaults, and scores
them against the true objects: the best a network of each kind can do on touching discs (seeds 0-9,
``touching_discs((256, 256), n_objects=40, seed=s)``) and on the nuclei test images.

Examples::

    python benchmarks/bench_quality.py                          # all three, the issue's budgets, CPU
    python benchmarks/bench_quality.py --only discs --budget-discs 40
    python benchmarks/bench_quality.py --only isbi --budget-isbi 600 --json isbi.json
    python benchmarks/bench_quality.py --only discs,nuclei --set instance_classes=3
    python benchmarks/bench_quality.py --ceiling
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
# the data set's folder; SEAMLESS_UNET_ISBI names another (a copy carried to a GPU machine)
ISBI = Path(os.environ.get("SEAMLESS_UNET_ISBI", REPO.parent / "shared" / "data" / "isbi2012"))
# The grid before 2026-12-07 stopped at 0.95, where the best Rand error of a 16-channel model often lies: the
# finer steps up to 0.99 follow the curve to its minimum. ``rand_error_to_095`` keeps the old grid's figure.
COARSE_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
THRESHOLDS = np.concatenate([COARSE_THRESHOLDS, np.round(np.arange(0.96, 0.995, 0.01), 2)])


def isbi_data(path: Path, tune: bool = False):
    """Slices 0-19 train, 20-24 test; with ``tune``, 0-14 train and 15-19 score (20-24 never read)."""
    import tifffile

    volume = tifffile.imread(path / "train-volume.tif").astype(np.float32)
    cells = (tifffile.imread(path / "train-labels.tif") == 255).astype(np.int32)  # class 1 = cell, 0 = membrane
    train, test = (slice(0, 15), slice(15, 20)) if tune else (slice(0, 20), slice(20, 25))
    return (list(volume[train]), list(cells[train])), (volume[test], cells[test])


def isbi_scores(cell_probability: np.ndarray, truth: np.ndarray) -> dict:
    """Pixel and Rand error of each threshold; the best of each (they may come from different thresholds).

    ``rand_error``: the challenge's Rand error (:func:`napari_seamless_unet.core.metrics.rand_error`: 1 - F-score
    of the foreground-restricted Rand index, as the ISBI 2012 evaluation scores it and the paper reports it) of
    the cells, the connected components of ``probability > t``: annotated membrane is not scored, and a pixel
    predicted as membrane joins no pair. ``rand_error_skimage``: ``skimage.metrics.adapted_rand_error`` of the same
    components, which counts the pixels predicted as membrane as one more segment, so that a membrane predicted
    thicker than annotated merges the cells on both sides (the figure this benchmark printed as its Rand error
    before 2026-12-03). ``rand_error_cells_grown``: the components each grown over the predicted membrane to the
    nearest cell (``skimage.segmentation.expand_labels``), a cell segmentation without membrane pixels.
    """
    from skimage.metrics import adapted_rand_error
    from skimage.segmentation import expand_labels

    from napari_seamless_unet.core.metrics import rand_error

    truth_cells = [ndimage.label(t)[0] for t in truth]
    scores: dict[str, dict[float, float]] = {"pixel": {}, "rand": {}, "skimage": {}, "grown": {}}
    for t in THRESHOLDS:
        cells = cell_probability > t
        components = [ndimage.label(c)[0] for c in cells]
        pairs = list(zip(truth_cells, components))
        scores["pixel"][float(t)] = float(np.mean(cells != truth.astype(bool)))
        scores["rand"][float(t)] = float(np.mean([rand_error(g, c)["error"] for g, c in pairs]))
        scores["skimage"][float(t)] = float(np.mean([adapted_rand_error(g, c)[0] for g, c in pairs]))
        scores["grown"][float(t)] = float(np.mean([rand_error(g, expand_labels(c, 50))["error"] for g, c in pairs]))
    best = {name: min(values, key=values.get) for name, values in scores.items()}
    coarse = {t: v for t, v in scores["rand"].items() if t <= 0.95}
    return {
        "rand_error_to_095": min(coarse.values()),
        "rand_by_threshold": {f"{t:.2f}": round(v, 4) for t, v in scores["rand"].items()},
        "pixel_error": scores["pixel"][best["pixel"]],
        "pixel_threshold": best["pixel"],
        "rand_error": scores["rand"][best["rand"]],
        "rand_threshold": best["rand"],
        "rand_error_skimage": scores["skimage"][best["skimage"]],
        "rand_skimage_threshold": best["skimage"],
        "rand_error_cells_grown": scores["grown"][best["grown"]],
        "rand_grown_threshold": best["grown"],
    }


def instance_scores(predicted: list[np.ndarray], truth: list[np.ndarray]) -> dict:
    from napari_seamless_unet.core.metrics import instance_iou_matrix

    matched = found = true = 0
    ious: list[float] = []
    for p, t in zip(predicted, truth):
        iou = instance_iou_matrix(p, t)  # (true objects, predicted objects)
        hits = iou[iou > 0.5]  # above 0.5 a match is one-to-one
        matched += hits.size
        ious += hits.tolist()
        true += iou.shape[0]
        found += iou.shape[1]
    return {
        "ap50": matched / max(1, found + true - matched),
        "mean_matched_iou": float(np.mean(ious)) if ious else float("nan"),
        "objects_found": found,
        "objects_true": true,
    }


def discs_data(tune: bool = False):
    """Seeds 0, 1 train and 2, 3 test; with ``tune``, seeds 10, 11 score (the post-processing tuning images)."""
    from napari_seamless_unet.core.synthetic import touching_discs

    pairs = [touching_discs((256, 256), n_objects=40, seed=s) for s in ((0, 1, 10, 11) if tune else range(4))]
    return ([p[0] for p in pairs[:2]], [p[1] for p in pairs[:2]]), (
        [p[0] for p in pairs[2:]],
        [p[1] for p in pairs[2:]],
    )


def nuclei_data(tune: bool = False):
    """Seeds 100-102 train and 103, 104 test; with ``tune``, seeds 110, 111 score."""
    from napari_seamless_unet.core.synthetic import clustered_nuclei

    seeds = (100, 101, 102, 110, 111) if tune else range(100, 105)
    pairs = [clustered_nuclei((512, 512), n_clusters=14, per_cluster=(4, 10), seed=s) for s in seeds]
    return ([p[0] for p in pairs[:3]], [p[1] for p in pairs[:3]]), (
        [p[0] for p in pairs[3:]],
        [p[1] for p in pairs[3:]],
    )


def ceiling(name: str) -> list[dict]:
    """Scores of perfect two- and three-class maps of the true objects, labelled with the default options."""
    from napari_seamless_unet import instances_from_probabilities
    from napari_seamless_unet.core.metrics import instance_iou_matrix
    from napari_seamless_unet.core.synthetic import touching_discs
    from napari_seamless_unet.core.weights import interior_border_classes, separate_touching

    if name == "discs":
        truths = [touching_discs((256, 256), n_objects=40, seed=s)[1] for s in range(10)]
    else:
        truths = list(nuclei_data()[1][1])
    targets = {
        "2 classes (gap, restore_borders)": lambda t: (separate_touching(t) > 0).astype(np.int64),
        "3 classes (interior, border)": interior_border_classes,
    }
    rows = []
    for representation, target in targets.items():
        predicted, best = [], []
        for truth in truths:
            classes = target(truth)
            probabilities = np.stack([classes == k for k in range(int(classes.max()) + 1)]).astype(np.float32)
            predicted.append(instances_from_probabilities(probabilities))
            best.append(instance_iou_matrix(predicted[-1], truth).max(1))  # each true object's best IoU
        best = np.concatenate(best)
        rows.append(
            {
                "data": name,
                "representation": representation,
                "mean_object_iou": float(best.mean()),
                "exact_objects": int((best == 1).sum()),
                **instance_scores(predicted, truths),
            }
        )
    return rows


def run(
    name: str,
    budget: float,
    device: str,
    seed: int,
    overrides: dict | None = None,
    save_dir: str | None = None,
    tta: bool = False,
    load_dir: str | None = None,
    tune: bool = False,
) -> dict:
    from napari_seamless_unet import TrainConfig, load_model, predict, save_model, segment, train

    task = "semantic" if name == "isbi" else "instances"
    (images, labels), (test_images, test_labels) = {
        "isbi": lambda: isbi_data(ISBI, tune),
        "discs": lambda: discs_data(tune),
        "nuclei": lambda: nuclei_data(tune),
    }[name]()
    started = time.perf_counter()
    if load_dir:  # evaluate a model saved by --save-models (e.g. with --tta) without training again
        model = load_model(Path(load_dir) / f"{name}.unet.pt")
        history = model.metadata["history"]
    else:
        config = TrainConfig(task=task, time_budget=budget, device=device, seed=seed, **(overrides or {}))
        model, history = train(images, labels, config=config)
    train_seconds = time.perf_counter() - started
    if save_dir and not load_dir:
        save_model(model, Path(save_dir) / f"{name}.unet.pt")
    result = {
        "data": name,
        "budget_s": budget,
        "train_s": round(train_seconds, 1),
        "split": "tune" if tune else "test",
        "steps": len(history["step"]),
        "stop_reason": history.get("stop_reason"),
        "settings": history.get("settings"),
    }
    started = time.perf_counter()
    if name == "isbi":
        probability = np.stack([predict(model, im, device=device, tta=tta)[1] for im in test_images])
        result.update(isbi_scores(probability, test_labels))
    else:
        predicted = [segment(model, im, device=device, tta=tta) for im in test_images]
        result.update(instance_scores(predicted, test_labels))
    result["predict_s"] = round(time.perf_counter() - started, 1)
    return result


def network_text(settings: dict | None) -> str:
    """'16/3/188 x2, bf16': channels/depth/training tile, the members if more than one, the precision."""
    if not settings or "base_channels" not in settings:
        return ""
    members = int(settings.get("members") or 1)
    return (
        f"{settings['base_channels']}/{settings['depth']}/{settings['tile_size']}"
        + (f" x{members}" if members > 1 else "")
        + f", {settings.get('precision', 'fp32')}"
    )


def _value(text: str):
    """A ``--set`` value: JSON (numbers, true, null, lists), else the text itself (``precision=bf16``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="isbi,discs,nuclei", help="comma-separated: isbi, discs, nuclei")
    parser.add_argument("--budget-isbi", type=float, default=600.0)
    parser.add_argument("--budget-discs", type=float, default=40.0)
    parser.add_argument("--budget-nuclei", type=float, default=300.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--save-models", metavar="DIR", help="save each trained model as DIR/<data>.unet.pt")
    parser.add_argument("--tta", action="store_true", help="predict the test images with test-time augmentation")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="score a tuning split instead of the test (ISBI: train 0-14, score 15-19; other seeds for the rest)",
    )
    parser.add_argument(
        "--load-models", metavar="DIR", help="evaluate DIR/<data>.unet.pt (from --save-models) instead of training"
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="train nothing: score perfect two- and three-class targets of discs and nuclei (see above)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a TrainConfig setting instead of its default, for experiments (e.g. --set base_channels=8)",
    )
    args = parser.parse_args()
    if args.ceiling:
        print("| data | representation | mean object IoU | exact objects | AP@0.5 | objects (found/true) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in (r for name in ("discs", "nuclei") for r in ceiling(name)):
            print(
                f"| {row['data']} | {row['representation']} | {row['mean_object_iou']:.4f} | "
                f"{row['exact_objects']}/{row['objects_true']} | {row['ap50']:.3f} | "
                f"{row['objects_found']}/{row['objects_true']} |"
            )
        return
    import torch

    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    results = []
    for name in args.only.split(","):
        budget = getattr(args, f"budget_{name}")
        overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
        result = run(
            name, budget, args.device, args.seed, overrides, args.save_models, args.tta, args.load_models, args.tune
        )
        result["tta"] = args.tta
        result["overrides"] = overrides
        results.append(result)
        print(json.dumps(result), flush=True)
    print()
    print(
        "| data | budget | network | steps | ended by | pixel error | Rand error | Rand error, thresholds to 0.95 | "
        "Rand error, skimage | Rand error, cells grown | AP@0.5 | mean matched IoU | objects (found/true) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:

        def f(key: str, r: dict = r) -> str:
            return f"{r[key]:.3f}" if key in r else ""

        objects = f"{r['objects_found']}/{r['objects_true']}" if "objects_true" in r else ""
        print(
            f"| {r['data']} | {r['budget_s']:g} s | {network_text(r.get('settings'))} | {r['steps']} | "
            f"{r['stop_reason']} | {f('pixel_error')} | "
            f"{f('rand_error')} | {f('rand_error_to_095')} | {f('rand_error_skimage')} | "
            f"{f('rand_error_cells_grown')} | {f('ap50')} | {f('mean_matched_iou')} | {objects} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
