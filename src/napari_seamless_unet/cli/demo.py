"""``seamless-unet demo``: train a tiny U-Net on a synthetic image, segment a new one and score it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..core.errors import UNetInputError
from ..core.presets import NETWORK_PRESETS
from ._common import EXIT_INTERRUPTED, PROG, ProgressBar, check_device, positive_float, positive_int


def add_parser(subparsers) -> None:
    """Add the ``demo`` command to ``subparsers``."""
    demo = subparsers.add_parser(
        "demo",
        help="train briefly on a synthetic sample and segment it (about a minute)",
        description="Train a tiny U-Net on the bundled synthetic touching-discs image on the "
        "CPU, segment a new image of the same kind, and write the image, the predicted labels "
        "and the model into --out-dir.",
    )
    demo.add_argument("--out-dir", default="seamless-unet-demo", help="(default: %(default)s)")
    demo.add_argument("--steps", type=positive_int, default=1500, help="training steps (default: %(default)s)")
    demo.add_argument(
        "--time-budget",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="stop training after this many seconds at the latest (default: %(default)s)",
    )
    demo.add_argument("--size", choices=tuple(NETWORK_PRESETS), default="tiny", help="(default: %(default)s)")
    demo.add_argument("--learning-rate", type=positive_float, default=None, help="default: the training API's")
    demo.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    demo.add_argument("--device", default="cpu", help="(default: %(default)s)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=run)


def run(args) -> int:
    """Train on one synthetic image, segment another, write both with the ground truth, and print the score."""
    import numpy as np

    from ..core.metrics import match_instances
    from ..core.predict import segment
    from ..core.synthetic import touching_discs
    from ..io import write_tiff
    from .train import STOP_REASONS, make_config, run_training, saved_message

    device = check_device(args.device)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UNetInputError(f"--out-dir {str(out_dir)!r} is a file, not a folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "demo-model.unet.pt"
    base, depth = NETWORK_PRESETS[args.size]
    # Train on the bundled sample, then segment a new image of the same kind, so the score is not memorised.
    image, labels = touching_discs(shape=(256, 256), seed=0)
    test_image, test_truth = touching_discs(shape=(256, 256), seed=1)
    config = make_config(
        task="instances",
        base_channels=base,
        depth=depth,
        dropout=0.0,
        steps=args.steps,
        time_budget=args.time_budget,
        save_path=str(model_path),
        seed=args.seed,
        device=device,
        validation_fraction=0.0,
        checkpoint_every=max(args.steps, 1),
        learning_rate=args.learning_rate,
    )
    if not args.quiet:
        print(
            f"demo: training a tiny U-Net ({base} base channels, depth {depth}) on the synthetic "
            f"touching-discs sample on {device or 'the best device'}",
            file=sys.stderr,
        )
    start = time.perf_counter()
    result, interrupted = run_training(args, [image], [labels], config, None, desc="demo training")
    if interrupted:
        print(f"{PROG}: interrupted; {saved_message(model_path)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    model, history = result
    train_seconds = time.perf_counter() - start
    if not model_path.exists():
        from ..core.model_io import save_model

        save_model(model, model_path)
    start = time.perf_counter()
    with ProgressBar(args.quiet, desc="demo segmentation", unit="tile") as bar:
        predicted = segment(model, test_image, device=device, progress=bar)
    predict_seconds = time.perf_counter() - start
    write_tiff(out_dir / "demo-image.tif", test_image, "YX")
    write_tiff(out_dir / "demo-labels.tif", predicted, "YX")
    write_tiff(out_dir / "demo-ground-truth.tif", test_truth, "YX")
    score = match_instances(predicted, test_truth)
    losses = (history or {}).get("loss") or [float("nan")]
    reason = (history or {}).get("stop_reason")
    ended = f", ended by {STOP_REASONS[reason]}" if reason in STOP_REASONS else ""
    print(
        f"trained {len((history or {}).get('step') or [])} of {args.steps} steps in {train_seconds:.1f} s{ended} "
        f"(final loss {float(np.mean(losses[-10:])):.3f}); segmented a new 256 x 256 image in "
        f"{predict_seconds:.1f} s"
    )
    print(
        f"accuracy vs ground truth: foreground IoU {score['foreground_iou']:.3f}; {score['matched']} of "
        f"{score['true']} discs found at IoU > 0.5 ({score['predicted']} predicted, F1 {score['f1']:.3f})"
    )
    print(
        f"wrote {out_dir / 'demo-image.tif'}, {out_dir / 'demo-labels.tif'} (prediction), "
        f"{out_dir / 'demo-ground-truth.tif'} and {model_path}"
    )
    print(f"next: seamless-unet info {model_path}   |   open the TIFFs in napari or Fiji")
    return 0
