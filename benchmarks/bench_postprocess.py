"""Post-processing options of a trained instance model, scored on tuning images that are not the test images.

``bench_quality.py --save-models DIR`` keeps the models it trains; this script predicts each once and labels
the probabilities with every method and threshold (``instances_from_probabilities``), on images of seeds the
quality benchmark does not test on (touching discs: seeds 10-15, the benchmark tests 2-3; clustered nuclei:
seeds 110-112, the benchmark tests 103-104), so that the defaults are not tuned on the test.

Example::

    python benchmarks/bench_quality.py --only discs,nuclei --save-models models/
    python benchmarks/bench_postprocess.py --models models/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_quality import instance_scores

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def tuning_images(name: str):
    from napari_seamless_unet.core.synthetic import clustered_nuclei, touching_discs

    if name == "discs":
        return [touching_discs((256, 256), n_objects=40, seed=s) for s in range(10, 16)]
    return [clustered_nuclei((512, 512), n_clusters=14, per_cluster=(4, 10), seed=s) for s in range(110, 113)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="folder with discs.unet.pt and/or nuclei.unet.pt")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from napari_seamless_unet import instances_from_probabilities, load_model, predict
    from napari_seamless_unet.core.postprocess import METHODS

    print("| data | classes | method | threshold | AP@0.5 | mean matched IoU | objects (found/true) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ("discs", "nuclei"):
        path = Path(args.models) / f"{name}.unet.pt"
        if not path.exists():
            continue
        model = load_model(path)
        pairs = tuning_images(name)
        probabilities = [predict(model, image, device=args.device) for image, _ in pairs]
        truth = [labels for _, labels in pairs]
        for method in METHODS:
            for t in THRESHOLDS:
                labelled = [instances_from_probabilities(p, threshold=t, method=method) for p in probabilities]
                r = instance_scores(labelled, truth)
                print(
                    f"| {name} | {model.num_classes} | {method} | {t} | {r['ap50']:.3f} | "
                    f"{r['mean_matched_iou']:.3f} | {r['objects_found']}/{r['objects_true']} |"
                )


if __name__ == "__main__":
    main()
