"""The same engine from a terminal.

    tlapp check DATA                      # the per-class table; exit 1 if it cannot be trained
    tlapp train DATA --model resnet18 --freeze 3 --epochs 5 --out runs/mine
    tlapp predict RUN_DIR photo.jpg more/ --csv predictions.csv

DATA is a folder of class subfolders, a train/val folder, a .zip of either, or a CSV of path,label.
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd
from tqdm import tqdm

from .config import make_config
from .data import DataError, image_files, load_dataset
from .health import check_health
from .models import DEFAULT_MODEL, ModelError
from .predict import Predictor
from .runs import RunError
from .train import Job, RunState, resume_config


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ModelError, RunError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tlapp", description="Transfer learning on images with timm.")
    sub = p.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="scan a dataset and say whether it can be trained")
    _data_args(check)
    check.set_defaults(func=cmd_check)

    train = sub.add_parser("train", help="train a classifier and write a run folder")
    _data_args(train, optional=True)  # optional: --resume needs none
    train.add_argument(
        "--resume",
        default="",
        metavar="RUN_DIR",
        help="continue a stopped or crashed run from its last finished epoch",
    )
    train.add_argument("--model", default=DEFAULT_MODEL, help="any timm model name")
    train.add_argument(
        "--freeze",
        default="0",
        help="stages frozen from the input: 0 trains everything, 'all' only the head",
    )
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--img-size", type=int, default=224)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument(
        "--recipe",
        default="two-phase",
        choices=["two-phase", "one-phase"],
        help="two-phase: fit the head on frozen features, then fine-tune; "
        "one-phase: train everything together from the start",
    )
    train.add_argument(
        "--layer-decay",
        type=float,
        default=0.7,
        help="two-phase fine-tuning: each layer nearer the input learns this much slower",
    )

    train.add_argument(
        "--weights",
        default="auto",
        help="auto | pretrained | none | a .safetensors/.pth file | a run folder",
    )
    train.add_argument(
        "--out", default="", help="run folder (default: a new one under --runs-root)"
    )
    train.add_argument("--runs-root", default="runs")
    train.add_argument("--no-augment", action="store_true", help="turn off light augmentation")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="classify images with a trained run")
    predict.add_argument("run_dir")
    predict.add_argument("images", nargs="+", help="image files or folders")
    predict.add_argument("--csv", default="", help="write one row per image to this CSV file")
    predict.set_defaults(func=cmd_predict)
    return p


def _data_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument(
        "data",
        help="folder, train/val folder, .zip or CSV of path,label",
        **({"nargs": "?", "default": ""} if optional else {}),
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of each class held out for validation when there is no val/ folder",
    )
    p.add_argument("--seed", type=int, default=0)


def cmd_check(args) -> int:
    dataset = load_dataset(args.data, args.val_fraction, args.seed)
    print(dataset.report().to_string(index=False))
    if len(dataset.skipped):
        print(f"\nSkipped {len(dataset.skipped)} files:")
        print(dataset.skipped.to_string(index=False))
    print("\n" + dataset.summary())
    for warning in dataset.warnings():
        print(f"note: {warning}")
    findings = check_health(dataset)
    for row in findings.itertuples():
        print(f"health: {row.finding}: {row.detail} ({len(row.paths)} images, e.g. {row.paths[0]})")
    problems = dataset.problems()
    if problems:
        print(f"cannot train: {problems[0]}", file=sys.stderr)
        return 1
    print("ready to train")
    return 0


def cmd_train(args) -> int:
    if args.resume:
        job = Job(resume_config(args.resume), resume=True).start()
        return report(follow(job))
    if not args.data:
        raise DataError("Give the data to train on (a folder, .zip or CSV), or --resume RUN_DIR.")
    config = make_config(
        data=args.data,
        model=args.model,
        freeze=args.freeze,
        epochs=args.epochs,
        img_size=args.img_size,
        batch_size=args.batch_size,
        lr=args.lr,
        recipe=args.recipe,
        layer_decay=args.layer_decay,
        weights=args.weights,
        out=args.out,
        runs_root=args.runs_root,
        augment=not args.no_augment,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
    )
    return report(follow(Job(config).start()))


def report(state: RunState) -> int:
    for note in state.notes:
        print(note)
    print(state.message, file=sys.stderr if state.status == "failed" else sys.stdout)
    if state.history:
        print(pd.DataFrame(state.history).round(4).to_string(index=False))
    return {"done": 0, "stopped": 130}.get(state.status, 1)


def follow(job: Job) -> RunState:
    """Show a progress bar until the job ends; Ctrl-C stops it and keeps the best model."""
    bar = None
    try:
        while job.running:
            state = job.snapshot()
            if state.step_losses:  # training has taken its first step
                bar = bar or tqdm(total=state.epochs * state.steps_per_epoch, unit="step")
                show_progress(bar, state)
            time.sleep(0.2)
    except KeyboardInterrupt:
        job.stop()
        print("\nstopping after this batch…", file=sys.stderr)
    state = job.wait()
    if bar:
        show_progress(bar, state)
        bar.close()
    return state


def show_progress(bar: tqdm, state: RunState) -> None:
    last = state.history[-1] if state.history else None
    bar.n = (state.epoch - 1) * state.steps_per_epoch + state.step
    bar.set_description(f"epoch {state.epoch}/{state.epochs}")
    bar.set_postfix_str(
        f"loss {state.step_losses[-1]:.3f}"
        + (f", val acc {last['val_accuracy']:.1%}" if last else "")
    )


def cmd_predict(args) -> int:
    table = Predictor(args.run_dir).table(image_files(args.images))
    if args.csv:
        table.to_csv(args.csv, index=False)
    top = table[["path", "prediction", "confidence", "error"]]
    print(top.to_string(index=False))
    return 0 if len(table) and (table["error"] == "").all() else 1
