"""``seamless-unet info``: show what a model file holds, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import UNetInputError
from ._common import fail


def add_parser(subparsers) -> None:
    """Add the ``info`` command to ``subparsers``."""
    info = subparsers.add_parser(
        "info",
        help="show what a model file holds",
        description="Show architecture, task, classes, normalisation, training settings, training history, "
        "training data, lineage (the models it was fine-tuned from) and versions stored in a model file; or, with "
        "--starters, the starter models to fine-tune (train --init NAME).",
    )
    info.add_argument("model", nargs="?", default=None, help="model file (.unet.pt)")
    info.add_argument("--starters", action="store_true", help="list the starter models shipped with the package")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(handler=run)


def run(args) -> int:
    """Print the description of ``args.model``, or the starter models."""
    if args.starters:
        if args.model is not None:
            raise UNetInputError("give a model file or --starters, not both.")
        return _print_starters(args.json)
    if args.model is None:
        return fail("give a model file, or --starters to list the starter models (see 'seamless-unet info --help')", 2)
    info = describe_model(args.model)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(format_info(info))
    return 0


def describe_model(path: str) -> dict[str, Any]:
    """What the model file at ``path`` holds, read without building the network."""
    from ..core import shapes
    from ..core.model_io import read_model_file

    payload = read_model_file(path)
    config, meta = payload["config"], payload["metadata"]
    params = sum(int(t.numel()) for t in payload["state_dict"].values() if hasattr(t, "numel"))
    depth = int(config.get("depth", 4))
    ndim = int(config.get("ndim") or 2)
    spacing = config.get("voxel_size")
    if ndim == 3 and spacing:
        geometry = shapes.Geometry(shapes.anisotropic_rules(spacing, depth))
    else:
        geometry = shapes.Geometry.paper(depth, ndim)
    tile = [r.min_input_size + r.step * (4 if ndim == 2 else 2) for r in geometry.rules]
    return {
        "file": str(path),
        "file_size_bytes": Path(path).stat().st_size,
        "format": f"{payload['format']} v{payload['format_version']}",
        "architecture": {
            "in_channels": config.get("in_channels"),
            "num_classes": config.get("num_classes"),
            "base_channels": config.get("base_channels"),
            "depth": depth,
            "dropout": config.get("dropout"),
            "parameters": params,
            "ndim": ndim,
            "voxel_size": list(spacing) if spacing else None,
            "halo": list(geometry.halo) if ndim == 3 else geometry.halo[0],
            "example_tile": [tile, list(geometry.output_shape(tile))],
        },
        "task": config.get("task"),
        "classes": config.get("class_names"),
        "normalization": config.get("normalization"),
        "axes": (meta.get("train_config") or {}).get("axes") or meta.get("axes"),
        "train_config": meta.get("train_config"),
        "history": meta.get("history"),
        "versions": meta.get("versions"),
        "created": meta.get("created"),
        "resumable": "training_state" in payload,
        "training_data": meta.get("training_data"),
        "lineage": meta.get("lineage") or [],
        "other_metadata": {k: v for k, v in meta.items() if k not in _SHOWN},
    }


_SHOWN = ("train_config", "history", "versions", "created", "axes", "training_data", "lineage")


def _print_starters(as_json: bool) -> int:
    """The starter models: name, description and whether this installation has the file."""
    from ..core.errors import ModelFileError
    from ..core.starters import STARTERS, starter_path

    rows = []
    for name, starter in STARTERS.items():
        try:
            path = str(starter_path(name))
        except ModelFileError:
            path = None
        rows.append({"name": name, "task": starter.task, "description": starter.description, "file": path})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        missing = "" if row["file"] else " [not installed]"
        print(f"{row['name']:<{width}}  {row['description']}{missing}")
    print("fine-tune one with: seamless-unet train IMAGES LABELS --init NAME")
    return 0


def training_data_text(summary: dict | None) -> str:
    """'3 plane(s) of 96 x 112, 32,256 annotated pixels, sha256 1a2b3c4d...'; 'not recorded'."""
    if not summary:
        return "not recorded"
    shapes = ", ".join(" x ".join(map(str, s)) for s in summary.get("plane_shapes") or [])
    text = f"{summary.get('planes')} plane(s) of {shapes or '?'}"
    if summary.get("annotated_pixels") is not None:
        text += f", {summary['annotated_pixels']:,} annotated pixels"
    if summary.get("sha256"):
        text += f", sha256 {summary['sha256'][:12]}"
    names = summary.get("names")
    if names:
        text += f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
    return text


def lineage_lines(lineage: list[dict]) -> list[str]:
    """One line per ancestor, oldest first: the model, its steps, when it was made, its weights."""
    lines = []
    for i, entry in enumerate(lineage, 1):
        steps = entry.get("steps")
        parts = [f"{steps} steps" if steps is not None else "steps not recorded"]
        if entry.get("created"):
            parts.append(f"created {entry['created']}")
        if entry.get("weights_sha256"):
            parts.append(f"weights {entry['weights_sha256'][:12]}")
        if entry.get("training_data"):
            parts.append("data " + training_data_text(entry["training_data"]))
        lines.append(f"  {i}. {entry.get('model')}: {', '.join(parts)}")
    return lines


def settings_table(config: dict[str, Any]) -> list[str]:
    """A training configuration as aligned ``name  value`` rows, nested settings (augmentation) indented."""
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", _plain(v)) for k, v in value.items()]
        else:
            rows.append((key, _plain(value)))
    width = max((len(name) for name, _ in rows), default=0)
    return [f"  {name.replace('_', ' '):<{width}}  {value}" for name, value in rows]


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _by_axis(value) -> str:
    """``[20, 188, 188]`` -> '20 x 188 x 188'; a number as it is."""
    return " x ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def format_info(info: dict[str, Any]) -> str:
    """The text form of :func:`describe_model`'s dict."""
    from .train import history_summary

    arch = info["architecture"]
    norm = info["normalization"] or {}
    if norm.get("mode") == "percentile":
        norm_text = f"percentile {norm.get('low')} - {norm.get('high')} per channel mapped to 0 - 1"
    else:
        norm_text = str(norm.get("mode", "unknown"))
    tile_in, tile_out = arch["example_tile"]
    ndim, spacing = arch.get("ndim", 2), arch.get("voxel_size")
    halo = arch["halo"]
    unit = "voxels" if ndim == 3 else "pixels"
    sizes = f"{unit} {' x '.join(f'{v:g}' for v in spacing)}" if spacing else f"{unit} not recorded (isotropic)"
    lines = [
        f"model file:     {info['file']} ({info['file_size_bytes'] / 2**20:.1f} MiB, {info['format']})",
        f"architecture:   {ndim}D U-Net, depth {arch['depth']}, {arch['base_channels']} base channels, "
        f"{arch['in_channels']} input channel(s), {arch['num_classes']} classes, dropout {arch['dropout']}, "
        f"{arch['parameters']:,} parameters",
        f"dimensions:     {ndim}D ({'volumes, ZYX' if ndim == 3 else 'planes, YX'}), {sizes}",
        f"tiles:          halo {_by_axis(halo)} px per side; e.g. a {_by_axis(tile_in)} input tile gives "
        f"{_by_axis(tile_out)} output {unit}",
        f"task:           {info['task']}",
        f"classes:        {', '.join(map(str, info['classes'] or []))}",
        f"normalisation:  {norm_text}",
        f"axes:           {info['axes'] or 'inferred from each image (YX, ZYX, CYX, ...)'}",
        f"created:        {info['created'] or 'unknown'}",
        f"resumable:      {'yes (optimizer state included)' if info['resumable'] else 'no'}",
    ]
    train_config = info["train_config"]
    if train_config:
        lines.append("training settings:")
        lines += settings_table(train_config)
    history_lines = history_summary(info["history"])
    lines += [f"history:        {line}" for line in history_lines] or ["history:        none recorded"]
    lines.append(f"training data:  {training_data_text(info.get('training_data'))}")
    lineage = info.get("lineage") or []
    if lineage:
        lines.append("lineage:        fine-tuned from (oldest first)")
        lines += lineage_lines(lineage)
    else:
        lines.append("lineage:        none (trained from random weights)")
    versions = info["versions"] or {}
    lines.append(f"versions:       {', '.join(f'{k} {v}' for k, v in versions.items()) or 'unknown'}")
    return "\n".join(lines)
