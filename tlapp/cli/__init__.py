"""The same engine from a terminal.

    tlapp check DATA                      # the per-class table; exit 1 if it cannot be trained
    tlapp train DATA --model resnet18 --freeze 3 --epochs 5 --out runs/mine
    tlapp train --resume runs/mine --epochs 10         # extend a run to 10 epochs in total
    tlapp lr-find DATA --model resnet18 --freeze 2     # suggest a fine-tuning learning rate
    tlapp predict RUN_DIR photo.jpg more/ --csv predictions.csv --top-k 3
    tlapp export RUN_DIR --format onnx --int8         # model.onnx, checked against PyTorch
    tlapp compare runs/                                # every run: method, accuracy, time, size
    tlapp self-train DATA unlabelled/ --threshold 0.9  # do unlabelled images help? (pseudo-labels)
    tlapp adabn RUN_DIR target/ --labelled sample/    # adapt to new images: BatchNorm statistics
    tlapp distill RUN_DIR --student test_resnet      # a smaller student, and int8: size, speed
    tlapp push RUN_DIR user/name                      # the Hugging Face Hub, private, with a card
    tlapp app                                          # the page, as `python app.py` serves it

DATA is a folder of class subfolders, a train/val folder, a .zip of either, or a CSV of path,label.
Every TrainConfig setting is a `train` flag (`tlapp train --help` lists them with their defaults).
`--json` (check, train, predict) prints one JSON record on stdout; the rest goes to stderr.

Exit codes:

    0    success
    1    the data cannot be trained, training failed, or an image could not be read (predict)
    2    bad arguments or settings (an unknown model, a missing folder, a value out of range)
    130  interrupted with Ctrl-C or SIGTERM (a training run keeps its best model so far)

One module per family of commands, each with its arguments (`add_*`) beside its handler
(`cmd_*`): `check`, `training` (train, lr-find), `using` (predict, export, push, compare, app),
`beyond` (self-train, adabn, distill); `args` holds what they share.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import sys
import time

from .. import __version__
from .args import Help, print_json
from .beyond import add_adabn, add_distil, add_pseudo
from .check import add_check
from .training import add_find, add_train
from .using import add_app, add_compare, add_export, add_predict, add_push

# When this process began, near enough (Python and this package start in a fraction of a second;
# torch comes later): a time budget (`train --time-budget`) counts from here, so that start-up
# and imports are inside it.
STARTED = time.monotonic()

# The engine (torch, timm, pandas) is imported inside each command, after the arguments are
# parsed: `--help` and argument errors answer at once.

# The engine leaves millions of objects behind (torch's and timm's modules), and the collection
# Python makes of them as it exits took a second after a run had printed its result. Frozen at
# exit, they are left to the operating system.
atexit.register(gc.freeze)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # DataError, ModelError, RunError: a sentence for the user
        print(f"error: {err}", file=sys.stderr)
        if getattr(args, "json", False):
            print_json({"error": str(err)})
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tlapp")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return __version__


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlapp", description="Transfer learning on images with timm.", formatter_class=Help
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, formatter_class=Help)
    for add in (
        add_check,
        add_train,
        add_find,
        add_predict,
        add_app,
        add_export,
        add_push,
        add_compare,
        add_pseudo,
        add_adabn,
        add_distil,
    ):
        add(command)
    return p
