"""The same engine from a terminal.

    tlapp check DATA                      # the per-class table; exit 1 if it cannot be trained
    tlapp train DATA --model resnet18 --freeze 3 --epochs 5 --out runs/mine
    tlapp lr-find DATA --model resnet18 --freeze 2     # suggest a fine-tuning learning rate
    tlapp predict RUN_DIR photo.jpg more/ --csv predictions.csv
    tlapp export RUN_DIR --format onnx --int8         # model.onnx, checked against PyTorch
    tlapp push RUN_DIR user/name                      # the Hugging Face Hub, private, with a card

DATA is a folder of class subfolders, a train/val folder, a .zip of either, or a CSV of path,label.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

from .config import DEFAULT_MODEL, make_config

# The engine (torch, timm, pandas) is imported inside each command, after the arguments are
# parsed: `--help` and argument errors answer at once.


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # DataError, ModelError, RunError: a sentence for the user
        print(f"error: {err}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlapp", description="Transfer learning on images with timm.", formatter_class=_Help
    )
    sub = p.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, formatter_class=_Help)

    check = command("check", help="scan a dataset and say whether it can be trained")
    _data_args(check)
    check.set_defaults(func=cmd_check)

    train = command("train", help="train a classifier and write a run folder")
    _data_args(train, optional=True)  # optional: --resume needs none
    train.add_argument(
        "--resume",
        default="",
        metavar="RUN_DIR",
        help="continue a stopped or crashed run from its last finished epoch",
    )
    _model_args(train)
    train.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs (phase two)")
    train.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    train.add_argument("--out", default="", help="run folder; empty: a new one under --runs-root")
    train.add_argument("--runs-root", default="runs", help="where new run folders go")
    train.set_defaults(func=cmd_train)

    find = command("lr-find", help="suggest a fine-tuning learning rate (as fastai's lr_find)")
    _data_args(find)
    _model_args(find)
    _sweep_args(find)
    find.set_defaults(func=cmd_lr_find)

    predict = command("predict", help="classify images with a trained run")
    predict.add_argument("run_dir")
    predict.add_argument("images", nargs="+", help="image files or folders")
    predict.add_argument("--csv", default="", help="write one row per image to this CSV file")
    predict.add_argument(
        "--onnx", action="store_true", help="classify with ONNX Runtime (the run's model.onnx)"
    )
    predict.set_defaults(func=cmd_predict)

    export = command("export", help="write the model as ONNX, checked against PyTorch")
    export.add_argument("run_dir")
    export.add_argument("--format", default="onnx", choices=["onnx"], help="the file format")
    export.add_argument(
        "--int8", action="store_true", help="also write model.int8.onnx (dynamic quantization)"
    )
    export.add_argument(
        "--check-images",
        nargs="+",
        default=None,
        metavar="IMAGE",
        help="image files or folders to check with when the run's validation images are gone",
    )
    export.set_defaults(func=cmd_export)

    push = command("push", help="publish the run to the Hugging Face Hub, with a model card")
    push.add_argument("run_dir")
    push.add_argument("repo_id", help="the model repository: name or user/name")
    push.add_argument("--public", action="store_true", help="make a new repository public")
    push.add_argument(
        "--token-env",
        default="",
        metavar="NAME",
        help="read the token from this environment variable (default: HF_TOKEN, else the "
        "login stored by `hf auth login`)",
    )
    push.set_defaults(func=cmd_push)
    return p


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown in --help, except empty ones ("default: " would say nothing)."""

    def _get_help_string(self, action):
        if action.default in (None, "") or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _model_args(p: argparse.ArgumentParser) -> None:
    """What a run trains and how: shared by `train` and `lr-find`."""
    p.add_argument("--model", default=DEFAULT_MODEL, help="any timm model name")
    p.add_argument(
        "--weights",
        default="auto",
        help="auto | pretrained | none | a .safetensors/.pth file | a run folder",
    )
    p.add_argument(
        "--freeze",
        default="0",
        help="stages frozen from the input: 0 trains everything, 'all' only the head",
    )
    p.add_argument("--img-size", type=int, default=224, help="images are resized to this square")
    p.add_argument("--batch-size", type=int, default=32, help="images per training step")
    p.add_argument(
        "--recipe",
        default="two-phase",
        choices=["two-phase", "one-phase"],
        help="two-phase: fit the head on frozen features, then fine-tune; "
        "one-phase: train everything together from the start",
    )
    p.add_argument(
        "--layer-decay",
        type=float,
        default=0.7,
        help="two-phase fine-tuning: each layer nearer the input learns this much slower",
    )
    p.add_argument("--no-augment", action="store_true", help="turn off light augmentation")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train"
    )


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-it", type=int, default=100, help="training steps of the sweep (fewer if it diverges)"
    )
    p.add_argument("--start-lr", type=float, default=1e-7, help="the sweep's first learning rate")
    p.add_argument("--end-lr", type=float, default=10.0, help="the rate it would reach at the end")


def _config(args, **extra):
    """The TrainConfig the command-line options describe."""
    return make_config(
        data=args.data,
        model=args.model,
        freeze=args.freeze,
        img_size=args.img_size,
        batch_size=args.batch_size,
        recipe=args.recipe,
        layer_decay=args.layer_decay,
        weights=args.weights,
        augment=not args.no_augment,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
        **extra,
    )


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
    p.add_argument("--seed", type=int, default=0, help="for the split and the training order")


def cmd_check(args) -> int:
    from .data import load_dataset
    from .health import check_health

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
    from .data import DataError
    from .train import Job, resume_config

    if args.resume:
        job = Job(resume_config(args.resume), resume=True).start()
        return report(follow(job))
    if not args.data:
        raise DataError("Give the data to train on (a folder, .zip or CSV), or --resume RUN_DIR.")
    config = _config(args, epochs=args.epochs, lr=args.lr, out=args.out, runs_root=args.runs_root)
    return report(follow(Job(config).start()))


def report(state) -> int:
    import pandas as pd

    for note in state.notes:
        print(note)
    print(state.message, file=sys.stderr if state.status == "failed" else sys.stdout)
    if state.history:
        print(pd.DataFrame(state.history).round(4).to_string(index=False))
    return {"done": 0, "stopped": 130}.get(state.status, 1)


def follow(job):
    """Show a progress bar until the job ends; Ctrl-C stops it and keeps the best model."""
    from tqdm import tqdm

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


def show_progress(bar, state) -> None:
    last = state.history[-1] if state.history else None
    bar.n = (state.epoch - 1) * state.steps_per_epoch + state.step
    bar.set_description(f"epoch {state.epoch}/{state.epochs}")
    bar.set_postfix_str(
        f"loss {state.step_losses[-1]:.3f}"
        + (f", val acc {last['val_accuracy']:.1%}" if last else "")
    )


def cmd_lr_find(args) -> int:
    from tqdm import tqdm

    from .train.lr_find import find_lr

    bar = tqdm(total=0, leave=False)

    def progress(what: str, done: int, total: int) -> None:
        if bar.desc != what:  # a new stage: decoding, embeddings, then the sweep
            bar.reset(total)
            bar.set_description_str(what)
        bar.n = done
        bar.refresh()

    sweep = {"start_lr": args.start_lr, "end_lr": args.end_lr, "num_it": args.num_it}
    try:
        finding = find_lr(_config(args), progress=progress, **sweep)
    except KeyboardInterrupt:
        print("\nstopped: no learning rate was found", file=sys.stderr)
        return 130
    finally:
        bar.close()
    print(sweep_table(finding))
    print(f"suggested learning rate: {finding.suggestion:.1e} ({finding.how})")
    return 0


def sweep_table(finding, rows: int = 10) -> str:
    """About `rows` steps spread evenly over the sweep, and the suggested one, marked."""
    import numpy as np

    table = finding.table()
    spread = np.linspace(0, len(table) - 1, min(rows, len(table))).round().astype(int)
    chosen = int(np.abs(np.log(table["lr"]) - np.log(finding.suggestion)).argmin())
    shown = table.iloc[sorted({*spread.tolist(), chosen})]
    text = shown.assign(
        lr=shown["lr"].map("{:.1e}".format),
        loss=shown["loss"].map("{:.3f}".format),
        mark=["<- suggested" if i == chosen else "" for i in shown.index],
    ).to_string(index=False, header=["lr", "loss", ""])
    return "\n".join(line.rstrip() for line in text.splitlines())


def cmd_predict(args) -> int:
    from .data import image_files
    from .predict import Predictor

    if args.onnx:
        from .export import OnnxPredictor

        predictor = OnnxPredictor(args.run_dir)
    else:
        predictor = Predictor(args.run_dir)
    table = predictor.table(image_files(args.images))
    if args.csv:
        table.to_csv(args.csv, index=False)
    top = table[["path", "prediction", "confidence", "error"]]
    print(top.to_string(index=False))
    return 0 if len(table) and (table["error"] == "").all() else 1


def cmd_export(args) -> int:
    from .export import export_onnx

    report = export_onnx(args.run_dir, check_images=args.check_images, quantize=args.int8)
    for written in filter(None, (report, report.int8)):
        print(written.describe())
        print(written.path)
    return 0


def cmd_push(args) -> int:
    from os import environ

    from .hub import push_to_hub

    token = None
    if args.token_env:
        token = environ.get(args.token_env, "").strip()
        if not token:
            raise ValueError(f"The environment variable {args.token_env} holds no token.")
    url = push_to_hub(args.run_dir, args.repo_id, token=token, private=not args.public)
    print(url)
    return 0
