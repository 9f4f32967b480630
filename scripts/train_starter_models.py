"""Train the starter models that ship with the package (src/napari_seamless_unet/starter_models/).

- ``nuclei``: instances (the paper's two classes and weight map) on synthetic clustered nuclei of our making
  (``core.synthetic.clustered_nuclei``, seeds 1000-1005, 512x512), scored on two other seeds.
- ``em-membranes``: semantic (class 0 membrane, class 1 cell) on the ISBI 2012 training slices 0-19 of
  ``../shared/data/isbi2012``; slices 20-24 are kept out for testing (benchmarks use them), and scored here.

Training is limited by steps, not time, so that the result does not depend on the machine's load. The weights are
stored in float16 (half the size in the wheel; loading casts them back to float32: the predictions differ from the
float32 model's by less than 1e-3 in probability, printed below). Run from the repository root::

    python scripts/train_starter_models.py                 # both
    python scripts/train_starter_models.py --only nuclei --steps-nuclei 3000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "napari_seamless_unet" / "starter_models"
sys.path.insert(0, str(REPO / "benchmarks"))


def _save_half(model, name: str, extra: dict, class_names: list[str] | None = None) -> Path:
    from napari_seamless_unet import save_model
    from napari_seamless_unet.core.starters import STARTERS

    starter = STARTERS[name]
    config = dict(model.config) | ({"class_names": class_names} if class_names else {})
    half = type(model)(**config)
    half.load_state_dict(model.state_dict())
    half = half.half()
    half.metadata = dict(model.metadata)
    half.metadata["starter"] = {
        "name": name,
        "description": starter.description,
        "trained_on": starter.trained_on,
        "citation": starter.citation,
        "script": "scripts/train_starter_models.py",
        **extra,
    }
    return save_model(half, OUT / starter.file)


def nuclei(steps: int, seed: int) -> None:
    from bench_quality import instance_scores
    from napari_seamless_unet import TrainConfig, load_model, segment, train
    from napari_seamless_unet.core.synthetic import clustered_nuclei

    pairs = [clustered_nuclei((512, 512), n_clusters=14, per_cluster=(4, 10), seed=1000 + s) for s in range(8)]
    images, labels = [p[0] for p in pairs[:6]], [p[1] for p in pairs[:6]]
    config = TrainConfig(task="instances", base_channels=16, depth=3, steps=steps, seed=seed, device="cpu")
    t0 = time.perf_counter()
    model = train(images, labels, config=config).model
    seconds = time.perf_counter() - t0
    scores = instance_scores([segment(model, p[0]) for p in pairs[6:]], [p[1] for p in pairs[6:]])
    path = _save_half(model, "nuclei", {"steps": steps, "test_ap50": scores["ap50"]})
    reloaded = load_model(path)
    again = instance_scores([segment(reloaded, p[0]) for p in pairs[6:]], [p[1] for p in pairs[6:]])
    print(
        f"nuclei: {steps} steps in {seconds:.0f} s; test AP@0.5 {scores['ap50']:.3f} (float16 file: "
        f"{again['ap50']:.3f}), mean matched IoU {scores['mean_matched_iou']:.3f}; {path.stat().st_size / 1e6:.2f} MB"
    )


def em_membranes(steps: int, seed: int) -> None:
    from bench_quality import ISBI, isbi_data, isbi_scores
    from napari_seamless_unet import TrainConfig, load_model, predict, train

    (images, labels), (test_images, test_labels) = isbi_data(ISBI)
    config = TrainConfig(task="semantic", base_channels=16, depth=4, steps=steps, seed=seed, device="cpu")
    t0 = time.perf_counter()
    model = train(images, labels, config=config).model
    seconds = time.perf_counter() - t0
    probability = np.stack([predict(model, im)[1] for im in test_images])
    scores = isbi_scores(probability, test_labels)
    path = _save_half(
        model,
        "em-membranes",
        {
            "steps": steps,
            "test_slices": "20-24",
            "test_pixel_error": scores["pixel_error"],
            "test_rand_error": scores["rand_error"],
        },
        class_names=["membrane", "cell"],  # ISBI labels: 0 membrane, 255 cell
    )
    reloaded = load_model(path)
    difference = max(float(np.abs(predict(reloaded, im)[1] - p).max()) for im, p in zip(test_images, probability))
    print(
        f"em-membranes: {steps} steps in {seconds:.0f} s; slices 20-24 pixel error {scores['pixel_error']:.3f}, "
        f"Rand error {scores['rand_error']:.3f} (best thresholds {scores['pixel_threshold']}, "
        f"{scores['rand_threshold']}); float16 file differs by {difference:.1e}; {path.stat().st_size / 1e6:.2f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="nuclei,em-membranes")
    parser.add_argument("--steps-nuclei", type=int, default=3000)
    parser.add_argument("--steps-em", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    OUT.mkdir(parents=True, exist_ok=True)
    only = args.only.split(",")
    if "nuclei" in only:
        nuclei(args.steps_nuclei, args.seed)
    if "em-membranes" in only:
        em_membranes(args.steps_em, args.seed)


if __name__ == "__main__":
    main()
