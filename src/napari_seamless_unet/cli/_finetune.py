"""``train --init``: fine-tuning a model file or a starter model, checked before any data is read."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UNetInputError


def check_init(args) -> None:
    """``--init`` keeps its model's network: refuse the options that would build another one, and a ``--task``
    other than the model's (said before any data is read)."""
    if not args.init:
        return
    from ..core.starters import STARTERS, starter_path

    if args.init in STARTERS and not Path(args.init).exists():
        starter_path(args.init)  # a starter this installation lacks: said now
    elif not Path(args.init).exists():
        known = ", ".join(STARTERS)
        raise UNetInputError(
            f"model to start from {args.init!r} does not exist; give a model file or a starter model's name ({known})."
        )
    given = [
        option
        for option, value in (
            ("--size", None if args.size == "auto" else args.size),
            ("--base-channels", args.base_channels),
            ("--depth", args.depth),
            ("--batch-norm/--no-batch-norm", args.batch_norm),
        )
        if value is not None
    ]
    if given:
        raise UNetInputError(f"--init keeps the network of the model it starts from: leave out {', '.join(given)}.")
    if args.task is not None:
        task = init_task(args.init)
        if task is not None and task != args.task:
            raise UNetInputError(
                f"the model to start from ({init_text(args.init)}) is a {task} model, but --task {args.task} was "
                f"given; leave --task out to keep the model's task."
            )


def init_task(init: str) -> str | None:
    """The task of the ``--init`` model, read without building it (a starter's from the registry)."""
    from ..core.model_io import read_model_file
    from ..core.starters import STARTERS

    if init in STARTERS and not Path(init).exists():
        return STARTERS[init].task
    if not Path(init).is_file():
        return None  # a package or a missing file: the training API says what is wrong
    return read_model_file(init)["config"].get("task")


def init_text(init: str) -> str:
    """'starter model 'nuclei'' or the model file's path."""
    from ..core.starters import STARTERS

    return f"starter model {init!r}" if init in STARTERS and not Path(init).exists() else str(init)
