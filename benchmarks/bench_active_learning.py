"""A simulated user annotating where the model is unsure, against one annotating at random (ISBI 2012).

Slices 0-19 of ``../shared/data/isbi2012`` are the pool, 20-24 the test. The user starts with one annotated
128x128 region (random, the same for both strategies of a seed) and trains a model from random weights; then,
in each of ``--rounds`` rounds, annotates ``--per-round`` more regions of the pool, chosen either

- by **uncertainty**: :func:`napari_seamless_unet.propose_regions` on the uncertainty map of the current model
  over every pool slice (:func:`napari_seamless_unet.uncertainty`), at most one region per slice, none
  overlapping what is annotated; or
- at **random**: uniformly among the regions (on the same 32-pixel grid) that do not overlap what is annotated,

and fine-tunes the current model (``train(..., init=model)``) on all its regions
(:func:`napari_seamless_unet.region_pair`, the network's context around each, ``TrainConfig(ignore_label=IGNORE)``)
for the same number of steps every round (steps, not seconds: the comparison does not depend on the machine's
load). After every round it prints the pixel error and the challenge's Rand error (``core.metrics.rand_error``
of the cells, the connected components of cell probability > 0.5; until 2026-12-03 skimage's
``adapted_rand_error``, which counts the predicted membrane as one more segment) on slices 20-24, per strategy,
mean and spread over ``--seeds`` seeds, twice: at the fixed threshold 0.5 (nothing chosen on the test slices),
and each error at its best threshold of the cell probability (``bench_quality.COARSE_THRESHOLDS``, 0.05 to
0.95, the grid its recorded figures used), the challenge's rule. At 0.5 one membrane gap left by a small model
merges two large cells and moves the Rand error by 0.3 from one round to the next; the best threshold scores the
model rather than that gap.

At the end, for the final models: the ROC AUC of the uncertainty map for telling the wrong pixels of the
prediction it describes (the argmax of the test-time-augmented probabilities) from the right ones, and the errors
with and without test-time augmentation (``tta=True``).

Example (the figures in benchmarks/README.md)::

    python benchmarks/bench_active_learning.py --seeds 0,1,2 --json al.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import COARSE_THRESHOLDS as THRESHOLDS  # the grid its recorded figures were scored on
from bench_quality import ISBI, isbi_data
from napari_seamless_unet.core.regions import PROPOSAL_MEASURE
from napari_seamless_unet.core.uncertainty import MEASURES

REGION = 128
GRID = 32


def errors(cell_probability: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """Pixel error and the challenge's Rand error (``core.metrics.rand_error``) of ``cell_probability >
    threshold`` against the cells ``truth`` (stacks of slices)."""
    from napari_seamless_unet.core.metrics import rand_error

    cells = cell_probability > threshold
    pixel = float(np.mean(cells != truth.astype(bool)))
    rand = float(np.mean([rand_error(ndimage.label(t)[0], ndimage.label(c)[0])["error"] for t, c in zip(truth, cells)]))
    return pixel, rand


def best_errors(cell_probability: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The lowest pixel error and the lowest Rand error over the thresholds of ``bench_quality`` (each at its own
    threshold, as the challenge and ``bench_quality.py`` score them): the same rule for both strategies."""
    scores = [errors(cell_probability, truth, float(t)) for t in THRESHOLDS]
    return min(s[0] for s in scores), min(s[1] for s in scores)


def overlaps(box, boxes) -> bool:
    y0, x0, y1, x1 = box
    return any(y0 < b[2] and b[0] < y1 and x0 < b[3] and b[1] < x1 for b in boxes)


def random_regions(rng, taken: list[tuple[int, tuple]], count: int, n_slices: int, side: int) -> list:
    chosen: list[tuple[int, tuple]] = []
    starts = np.arange(0, side - REGION + 1, GRID)
    while len(chosen) < count:
        s, y, x = int(rng.integers(n_slices)), int(rng.choice(starts)), int(rng.choice(starts))
        box = (y, x, y + REGION, x + REGION)
        if not overlaps(box, [b for t, b in taken + chosen if t == s]):
            chosen.append((s, box))
    return chosen


def uncertain_regions(model, pool, taken, count: int, args, seed: int) -> list:
    from napari_seamless_unet import propose_regions, uncertainty

    maps = np.stack([uncertainty(model, image, measure=args.measure) for image in pool])
    exclude = np.zeros(maps.shape, dtype=bool)
    for s, (y0, x0, y1, x1) in taken:
        exclude[s, y0:y1, x0:x1] = True
    options = {"sampling": args.sampling, "power": args.power, "seed": seed, "separation": args.separation}
    proposed = propose_regions(maps, REGION, count, exclude=exclude, stride=GRID, per_plane=1, **options)
    return [(r.plane[0], r.box) for r in proposed]


def fine_tune(model, regions, pool, pool_labels, steps: int, seed: int, args):
    from napari_seamless_unet import IGNORE, TrainConfig, halo, region_pair, train

    context = halo(args.depth if model is None else model.depth)  # the network's context around each region
    pairs = [region_pair(pool[s], pool_labels[s], box, context=context) for s, box in regions]
    settings = {"task": "semantic", "steps": steps, "seed": seed, "device": "cpu", "ignore_label": IGNORE}
    if model is None:  # fine-tuning keeps the model's architecture
        settings.update(base_channels=args.base_channels, depth=args.depth)
    config = TrainConfig(**settings, validation_fraction=0.0, val_every=10**6)
    return train([p[0] for p in pairs], [p[1] for p in pairs], config=config, init=model).model


def evaluate(model, test_images, test_labels, tta: bool = False) -> tuple[float, float, float, float]:
    """Pixel and Rand error at the fixed threshold 0.5, then each at its best threshold."""
    from napari_seamless_unet import predict

    probability = np.stack([predict(model, image, tta=tta)[1] for image in test_images])
    return errors(probability, test_labels) + best_errors(probability, test_labels)


def run_seed(seed: int, data, args) -> dict:
    (pool, pool_labels), (test_images, test_labels) = data
    rng = np.random.default_rng(seed)
    start = random_regions(rng, [], 1, len(pool), pool[0].shape[0])
    first = fine_tune(None, start, pool, pool_labels, args.first_steps, seed, args)
    result = {"seed": seed, "start": start}
    for strategy in args.strategies.split(","):
        model, regions = first, list(start)
        choose_rng = np.random.default_rng(1000 + seed)
        curve = [evaluate(model, test_images, test_labels)]
        for round_ in range(args.rounds):
            if strategy == "uncertainty":
                new = uncertain_regions(model, pool, regions, args.per_round, args, 2000 + 31 * seed + round_)
            else:
                new = random_regions(choose_rng, regions, args.per_round, len(pool), pool[0].shape[0])
            regions += new
            model = fine_tune(model, regions, pool, pool_labels, args.steps, seed + 17 * (round_ + 1), args)
            curve.append(evaluate(model, test_images, test_labels))
            print(
                f"seed {seed} {strategy:11s} round {round_ + 1}: at 0.5 pixel {curve[-1][0]:.4f} rand {curve[-1][1]:.4f}"
                f"; best thresholds pixel {curve[-1][2]:.4f} rand {curve[-1][3]:.4f}",
                flush=True,
            )
        final = {"curve": curve, "regions": regions}
        final["tta"] = evaluate(model, test_images, test_labels, tta=True)
        final["auc"] = {m: uncertainty_auc(model, test_images, test_labels, m) for m in MEASURES}
        result[strategy] = final
    return result


def uncertainty_auc(model, test_images, test_labels, measure: str = "entropy") -> float:
    """ROC AUC of the ``measure`` map for telling the wrong pixels of the TTA prediction from the right ones."""
    from napari_seamless_unet import predict, uncertainty
    from napari_seamless_unet.core.metrics import roc_auc

    scores, wrong = [], []
    for image, truth in zip(test_images, test_labels):
        scores.append(uncertainty(model, image, measure=measure))
        wrong.append(predict(model, image, tta=True).argmax(0) != truth)
    return roc_auc(np.stack(scores), np.stack(wrong))


def summarise(results: list[dict], rounds: int) -> None:
    def mean_std(values):
        return f"{np.mean(values):.4f} ± {np.std(values):.4f}"

    if not all("uncertainty" in res and "random" in res for res in results):  # one arm only (tuning)
        for strategy in ("uncertainty", "random"):
            for res in results:
                if strategy in res:
                    curve = " ".join("/".join(f"{v:.4f}" for v in point) for point in res[strategy]["curve"])
                    print(strategy, res["seed"], curve)
        return

    for title, columns in (("threshold 0.5", (0, 1)), ("each error at its best threshold", (2, 3))):
        print(f"\n{title}\nround | regions | uncertainty: pixel error | Rand error | random: pixel error | Rand error")
        print("--- | --- | --- | --- | --- | ---")
        for r in range(rounds + 1):
            cells = []
            for strategy in ("uncertainty", "random"):
                cells += [mean_std([res[strategy]["curve"][r][k] for res in results]) for k in columns]
            print(f"{r} | {1 + 4 * r} | " + " | ".join(cells))
    for strategy in ("uncertainty", "random"):
        plain = [res[strategy]["curve"][-1] for res in results]
        tta = [res[strategy]["tta"] for res in results]
        aucs = {m: [res[strategy]["auc"][m] for res in results] for m in MEASURES}
        print(
            f"final {strategy} (0.5; best): without TTA pixel {mean_std([p[0] for p in plain])}, Rand "
            f"{mean_std([p[1] for p in plain])}; {mean_std([p[2] for p in plain])}, {mean_std([p[3] for p in plain])}"
            f"; with TTA pixel {mean_std([t[0] for t in tta])}, Rand {mean_std([t[1] for t in tta])}; "
            f"{mean_std([t[2] for t in tta])}, {mean_std([t[3] for t in tta])}; uncertainty ROC AUC: entropy "
            f"{mean_std(aucs['entropy'])}, disagreement {mean_std(aucs['disagreement'])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=4)
    parser.add_argument("--first-steps", type=int, default=300, help="steps of the first model (one region)")
    parser.add_argument("--steps", type=int, default=200, help="steps of each round's fine-tuning")
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--sampling", default="top", choices=("top", "power"), help="propose_regions(sampling=)")
    parser.add_argument("--power", type=float, default=1.0, help="propose_regions(power=) for --sampling power")
    parser.add_argument(
        "--separation", type=int, default=0, help="propose_regions(separation=): planes kept apart (serial sections)"
    )
    parser.add_argument("--strategies", default="uncertainty,random")
    parser.add_argument(
        "--measure",
        default=PROPOSAL_MEASURE,
        choices=MEASURES,
        help="uncertainty(measure=) that regions are chosen by (default: %(default)s, the Annotate dock's and the "
        "CLI's choice for proposing regions)",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="the tuning split: pool slices 0-14, 'test' slices 15-19 (all inside the pool of the real run), so "
        "that choices are never made on slices 20-24",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = isbi_data(ISBI)
    if args.tune:
        (pool, labels), _ = data
        data = ((pool[:15], labels[:15]), (np.asarray(pool[15:]), np.asarray(labels[15:])))
    data = ((list(data[0][0]), list(data[0][1])), (np.asarray(data[1][0]), np.asarray(data[1][1])))
    t0 = time.perf_counter()
    results = [run_seed(int(s), data, args) for s in args.seeds.split(",")]
    summarise(results, args.rounds)
    print(f"({time.perf_counter() - t0:.0f} s; base_channels {args.base_channels}, depth {args.depth}, CPU)")
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, default=float)
        )


if __name__ == "__main__":
    main()
