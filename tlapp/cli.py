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
    130  interrupted with Ctrl-C (a training run keeps its best model so far)
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from dataclasses import fields

from . import __version__
from .config import RECIPES, TrainConfig, make_config

# The engine (torch, timm, pandas) is imported inside each command, after the arguments are
# parsed: `--help` and argument errors answer at once.


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
        prog="tlapp", description="Transfer learning on images with timm.", formatter_class=_Help
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, formatter_class=_Help)
    for add in (
        _add_check,
        _add_train,
        _add_find,
        _add_predict,
        _add_app,
        _add_export,
        _add_push,
        _add_compare,
        _add_pseudo,
        _add_adabn,
        _add_distil,
    ):
        add(command)
    return p


def _add_check(command) -> None:
    check = command("check", help="scan a dataset and say whether it can be trained")
    _data_arg(check)
    _settings_args(check, DATA_SETTINGS)
    _json_arg(check)
    check.set_defaults(func=cmd_check)


def _add_train(command) -> None:
    train = command("train", help="train a classifier and write a run folder")
    _data_arg(train, optional=True)  # optional: --resume needs none
    train.add_argument(
        "--resume",
        default="",
        metavar="RUN_DIR",
        help="continue a stopped or crashed run from its last finished epoch; with --epochs N, "
        "extend a finished run to N epochs in total",
    )
    _json_arg(train)
    _settings_args(train, [f.name for f in fields(TrainConfig) if f.name != "data"])
    train.set_defaults(func=cmd_train)


def _add_find(command) -> None:
    find = command("lr-find", help="suggest a fine-tuning learning rate (as fastai's lr_find)")
    _data_arg(find)
    _settings_args(find, DATA_SETTINGS + MODEL_SETTINGS)
    _sweep_args(find)
    find.set_defaults(func=cmd_lr_find)


def _add_predict(command) -> None:
    predict = command("predict", help="classify images with a trained run")
    predict.add_argument("run_dir")
    predict.add_argument("images", nargs="+", help="image files or folders")
    predict.add_argument("--csv", default="", help="write one row per image to this CSV file")
    predict.add_argument(
        "--onnx", action="store_true", help="classify with ONNX Runtime (the run's model.onnx)"
    )
    predict.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="where to classify; auto: a CUDA GPU, else Apple's MPS, else the CPU",
    )
    predict.add_argument(
        "--top-k", type=_positive, default=1, metavar="K", help="the K most likely classes"
    )
    _json_arg(predict)
    predict.set_defaults(func=cmd_predict)


def _add_app(command) -> None:
    app = command("app", help="serve the page in a browser (the same as `python app.py`)")
    app.add_argument(
        "--host",
        help="the address to serve on, 0.0.0.0 for every interface "
        "(default: $GRADIO_SERVER_NAME, else 127.0.0.1)",
    )
    app.add_argument("--port", type=int, help="the port (default: $GRADIO_SERVER_PORT, else 7860)")
    app.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    app.set_defaults(func=cmd_app)


def _add_export(command) -> None:
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


def _add_push(command) -> None:
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


def _add_compare(command) -> None:
    compare = command("compare", help="compare run folders: method, accuracy, time, size")
    compare.add_argument("runs", nargs="+", help="run folders, or folders of run folders")
    compare.add_argument("--json", action="store_true", help="one JSON record on stdout")
    compare.set_defaults(func=cmd_compare)


def _add_pseudo(command) -> None:
    pseudo = command(
        "self-train",
        help="pseudo-label unlabelled images where the head is sure, and see whether they help",
    )
    _data_arg(pseudo)
    pseudo.add_argument(
        "unlabelled", nargs="+", help="folders or files of unlabelled images of the same classes"
    )
    pseudo.add_argument(
        "--threshold",
        type=float,
        default=0.9,
        help="an unlabelled image is taken when the head's top probability is at least this",
    )
    pseudo.add_argument(
        "--rounds", type=_positive, default=1, help="label again with the refitted head"
    )
    pseudo.add_argument("--csv", default="", help="write every pseudo-label to this CSV file")
    _json_arg(pseudo)
    _settings_args(pseudo, DATA_SETTINGS + EMBEDDING_SETTINGS)
    pseudo.set_defaults(func=cmd_self_train)


def _add_adabn(command) -> None:
    adabn = command(
        "adabn",
        help="adapt a run to images of another kind (AdaBN: BatchNorm statistics re-estimated)",
    )
    adabn.add_argument("run_dir")
    adabn.add_argument("target", nargs="+", help="folders or files of unlabelled target images")
    adabn.add_argument(
        "--labelled",
        default="",
        metavar="LABELLED_DIR",
        help="labelled target images (a folder of class subfolders): accuracy before and after",
    )
    adabn.add_argument("--out", default="", help="the adapted run folder; empty: RUN_DIR-adabn")
    _json_arg(adabn)
    adabn.set_defaults(func=cmd_adabn)


def _add_distil(command) -> None:
    distil = command(
        "distill",
        help="teach a trained run to a smaller timm model, quantise it to int8, compare all three",
    )
    distil.add_argument("run_dir", help="the teacher: a finished run folder")
    distil.add_argument("--student", required=True, metavar="MODEL", help="a timm model name")
    distil.add_argument("--epochs", type=_positive, default=10, help="the student's epochs")
    distil.add_argument(
        "--temperature", type=float, default=4.0, help="softens the teacher's probabilities"
    )
    distil.add_argument(
        "--alpha", type=float, default=0.5, help="the weight of the true labels (0: teacher only)"
    )
    distil.add_argument(
        "--unlabelled",
        nargs="+",
        default=[],
        metavar="DIR",
        help="unlabelled images the teacher labels for the student (folders or files)",
    )
    distil.add_argument(
        "--weights", default="auto", help="the student's start: auto, pretrained or none"
    )
    distil.add_argument(
        "--img-size", type=_positive, default=None, help="default: the teacher's image size"
    )
    distil.add_argument("--out", default="", help="the student's run folder; empty: a new one")
    _json_arg(distil)
    distil.set_defaults(func=cmd_distill)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown in --help, except empty ones ("default: " would say nothing)."""

    def _get_help_string(self, action):
        if action.default in (None, "") or action.default is False:
            return action.help
        return super()._get_help_string(action)


# Help for each TrainConfig setting; its flag, type and default come from the dataclass itself.
SETTINGS_HELP = {
    "model": "any timm model name",
    "weights": "auto | pretrained | none | a .safetensors/.pth file | a run folder",
    "freeze": "stages frozen from the input: 0 trains everything, 'all' only the head",
    "epochs": "fine-tuning epochs (phase two); with --resume, the total to extend the run to",
    "img_size": "images are resized to this square",
    "batch_size": "images per training step",
    "lr": "fine-tuning learning rate (of the layers next to the head)",
    "recipe": "two-phase: fit the head on frozen features, then fine-tune; "
    "one-phase: train everything together from the start",
    "layer_decay": "two-phase fine-tuning: each layer nearer the input learns this much slower",
    "patience": "two-phase: stop fine-tuning after this many epochs without a better one "
    "(0: never stop early)",
    "weight_decay": "AdamW's weight decay",
    "warmup_epochs": "epochs of learning-rate warm-up",
    "label_smoothing": "label smoothing of the loss",
    "augment": "light augmentation: random resized crop, horizontal flip, mild colour jitter",
    "val_fraction": "share of each class held out for validation when there is no val/ folder",
    "seed": "for the split and the training order",
    "out": "run folder; empty: a new one under --runs-root",
    "runs_root": "where new run folders go",
    "device": "where to train: auto (a CUDA GPU, else an Apple GPU, else the CPU), cpu, cuda or mps",
    "precision": "auto (bf16 where the hardware runs it, else fp16 on a GPU and fp32 on a CPU), "
    "bf16, fp16 or fp32",
    "feature_cache": "keep the frozen backbone's embeddings on disk and reuse them",
    "cache_dir": "the embedding cache; empty: $TLAPP_CACHE or ~/.cache/tlapp",
    "memory_budget_gb": "GB of decoded images kept in memory; the rest are decoded on demand",
    "compile": "torch.compile the model on CUDA: slower start, faster long runs",
    "balance_classes": "weight the loss so that rare classes count as much as common ones",
    "corrections": "a corrections file made on the page (relabelled and left-out images)",
}
CHOICES = {"recipe": RECIPES}  # the others are checked by make_config, as the page's are
DATA_SETTINGS = ["val_fraction", "seed"]
MODEL_SETTINGS = [
    *("model", "weights", "freeze", "img_size", "batch_size"),
    *("recipe", "layer_decay", "augment", "device"),
]
# What a head on the frozen backbone's embeddings depends on (self-training).
EMBEDDING_SETTINGS = [
    *("model", "weights", "img_size", "batch_size", "head", "balance_classes"),
    *("device", "precision", "cache_dir"),
]
# What `train --resume` may change; the rest is the run's own.
RESUMABLE = [
    *("epochs", "patience", "device", "precision"),
    *("feature_cache", "cache_dir", "memory_budget_gb", "compile"),
]


def _settings_args(p: argparse.ArgumentParser, names: list[str]) -> None:
    """A flag for each TrainConfig setting named. The flag's value stays None unless given:
    make_config then uses the dataclass's default (shown in --help), and --resume can tell
    which settings were asked for."""
    group = p.add_argument_group("settings (TrainConfig; a run keeps them in its run.json)")
    declared = {f.name: f for f in fields(TrainConfig)}
    for name in names:
        default, kind = declared[name].default, declared[name].type
        shown = f" (default: {default})" if default != "" else ""
        extra = {"choices": CHOICES[name]} if name in CHOICES else {}
        if kind == "bool":
            extra["action"] = argparse.BooleanOptionalAction
        else:
            extra["type"] = {"int": int, "float": float, "int | str": _int_or_str}.get(kind, str)
        flag = "--" + name.replace("_", "-")
        text = SETTINGS_HELP.get(name, name.replace("_", " "))
        group.add_argument(flag, dest=name, help=text + shown, **extra)


def _given(args, names) -> dict:
    """The settings named on the command line."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _int_or_str(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _data_arg(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument(
        "data",
        help="folder, train/val folder, .zip or CSV of path,label",
        **({"nargs": "?", "default": ""} if optional else {}),
    )


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON record on stdout (everything else goes to stderr)",
    )


def print_json(record) -> None:
    """One JSON document on stdout: numpy numbers as plain ones, NaN and infinities as null."""

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    print(json.dumps(plain(record), allow_nan=False))


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-it", type=int, default=100, help="training steps of the sweep (fewer if it diverges)"
    )
    p.add_argument("--start-lr", type=float, default=1e-7, help="the sweep's first learning rate")
    p.add_argument("--end-lr", type=float, default=10.0, help="the rate it would reach at the end")


def cmd_check(args) -> int:
    from .data import load_dataset
    from .health import check_health

    config = make_config(data=args.data, **_given(args, DATA_SETTINGS))
    dataset = load_dataset(config.data, config.val_fraction, config.seed)
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    say(dataset.report().to_string(index=False))
    if len(dataset.skipped):
        say(f"\nSkipped {len(dataset.skipped)} files:")
        say(dataset.skipped.to_string(index=False))
    say("\n" + dataset.summary())
    for warning in dataset.warnings():
        say(f"note: {warning}")
    findings = check_health(dataset)
    for row in findings.itertuples():
        say(f"health: {row.finding}: {row.detail} ({len(row.paths)} images, e.g. {row.paths[0]})")
    problems = dataset.problems()
    if args.json:
        counts = dataset.report().set_index("class").drop(index="(all classes)")
        print_json(
            {
                "ready": not problems,
                "classes": dataset.classes,
                "layout": dataset.layout,
                "images": len(dataset.samples),
                "counts": {split: counts[split].to_dict() for split in counts.columns},
                "skipped": dataset.skipped.to_dict("records"),
                "problems": problems,
                "warnings": dataset.warnings(),
                "health": findings.to_dict("records"),
            }
        )
    if problems:
        print(f"cannot train: {problems[0]}", file=sys.stderr)
        return 1
    say("ready to train")
    return 0


def cmd_train(args) -> int:
    from .data import DataError, load_dataset
    from .models import preview_freeze
    from .train import Job

    given = _given(args, [f.name for f in fields(TrainConfig) if f.name != "data"])
    if args.resume:
        config = resumed_config(args.resume, args.data, given)
    elif args.data:
        config = make_config(data=args.data, **given)
    else:
        raise DataError("Give the data to train on (a folder, .zip or CSV), or --resume RUN_DIR.")
    preview_freeze(config.model, config.freeze)  # a wrong model name or depth: exit 2, at once
    dataset = load_dataset(
        config.data, config.val_fraction, config.seed, corrections=config.corrections or None
    )
    job = Job(config, dataset, resume=bool(args.resume)).start()
    return report(follow(job), args.json)


def resumed_config(run_dir: str, data: str, given: dict) -> TrainConfig:
    """The run's own configuration, with what may change on resuming: --epochs N extends a run
    to N epochs in total."""
    from . import runs
    from .train import resume_config

    kept = [n for n in given if n not in RESUMABLE]
    if data or kept:
        named = ["DATA"] * bool(data) + ["--" + n.replace("_", "-") for n in kept]
        raise ValueError(
            f"A resumed run keeps its own data and settings: leave out {', '.join(named)} "
            f"(only {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)} may change)."
        )
    info = runs.read_config(run_dir)
    done = max((int(row["epoch"]) for row in runs.read_metrics(run_dir)), default=0)
    planned, epochs = info["config"]["epochs"], given.get("epochs")
    freeze = info.get("freeze") or {}
    if epochs is not None and freeze and freeze.get("depth") == freeze.get("stages"):
        raise ValueError(
            f"'{run_dir}' trains only the head (every stage is frozen): it has no epochs to "
            "extend. Train a new run with a smaller --freeze."
        )
    if epochs is not None and epochs <= done:
        raise ValueError(
            f"'{run_dir}' has already trained {done} epoch{'s' * (done != 1)}, and --epochs "
            f"is the total: give more than {done} to extend it."
        )
    if epochs is None and info.get("status") == "done" and done >= planned:
        raise ValueError(
            f"'{run_dir}' has finished its {planned} epochs: give --epochs N (more than "
            f"{done}) to train it longer."
        )
    return resume_config(run_dir, **given)


def report(state, as_json: bool = False) -> int:
    import pandas as pd

    say = functools.partial(print, file=sys.stderr if as_json else sys.stdout)
    for note in state.notes:
        say(note)
    print(state.message, file=sys.stderr if state.status == "failed" or as_json else sys.stdout)
    if state.history:
        say(pd.DataFrame(state.history).round(4).to_string(index=False))
    if as_json:
        print_json(
            {
                "status": state.status,
                "message": state.message,
                "run_dir": state.run_dir,
                "best_epoch": state.best_epoch,
                "best_val_accuracy": state.best_accuracy if state.has_model else None,
                "test": state.test,
                "history": state.history,
                "notes": state.notes,
            }
        )
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

    from .data import load_dataset
    from .train.lr_find import find_lr

    config = make_config(data=args.data, **_given(args, DATA_SETTINGS + MODEL_SETTINGS))
    dataset = load_dataset(config.data, config.val_fraction, config.seed)
    if dataset.problems():
        print(f"cannot train: {dataset.problems()[0]}", file=sys.stderr)
        return 1
    bar = tqdm(total=0, leave=False)

    def progress(what: str, done: int, total: int) -> None:
        if bar.desc != what:  # a new stage: decoding, embeddings, then the sweep
            bar.reset(total)
            bar.set_description_str(what)
        bar.n = done
        bar.refresh()

    sweep = {"start_lr": args.start_lr, "end_lr": args.end_lr, "num_it": args.num_it}
    try:
        finding = find_lr(config, dataset, progress=progress, **sweep)
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
    import numpy as np

    from .data import image_files

    if args.onnx:
        from .export import OnnxPredictor

        if args.device not in ("auto", "cpu"):
            raise ValueError("ONNX Runtime classifies on the CPU here: leave out --device.")
        predictor, device = OnnxPredictor(args.run_dir), "cpu"
    else:
        from .predict import Predictor

        device = inference_device(args.device)
        predictor = Predictor(args.run_dir, device)
    table = predictor.table(image_files(args.images))
    if args.csv:
        table.to_csv(args.csv, index=False)
    classes = predictor.classes
    probs = table[[f"p({c})" for c in classes]].to_numpy(dtype=float)
    k = min(args.top_k, len(classes))
    top = [
        [] if error else [(classes[i], float(p[i])) for i in np.argsort(-p)[:k]]
        for p, error in zip(probs, table["error"])
    ]
    shown = table[["path", "prediction", "confidence", "error"]]
    if k > 1:
        shown.insert(3, f"top {k}", [", ".join(f"{c} {p:.3f}" for c, p in t) for t in top])
    print(shown.to_string(index=False), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        rows = table[["path", "prediction", "confidence", "error"]].to_dict("records")
        print_json(
            {
                "run_dir": str(args.run_dir),
                "device": device,
                "predictions": [
                    {**row, "top_k": [{"class": c, "probability": p} for c, p in t]}
                    for row, t in zip(rows, top)
                ],
            }
        )
    return 0 if len(table) and (table["error"] == "").all() else 1


def inference_device(choice: str) -> str:
    """auto: a CUDA GPU, else Apple's MPS, else the CPU; a device asked for must be there."""
    import torch

    there = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if choice == "auto":
        return next((name for name, ok in there.items() if ok), "cpu")
    if choice != "cpu" and not there[choice]:
        raise ValueError(f"There is no {choice.upper()} device here: use --device cpu or auto.")
    return choice


def cmd_app(args) -> int:
    """Serve the page until Ctrl-C; the options are passed on as Gradio's own variables."""
    for name, value in (
        ("GRADIO_SERVER_NAME", args.host),
        ("GRADIO_SERVER_PORT", args.port),
        ("GRADIO_SHARE", "1" if args.share else None),
    ):
        if value is not None:
            os.environ[name] = str(value)
    from .web import serve

    serve()
    return 0


def cmd_export(args) -> int:
    from .export import export_onnx

    report = export_onnx(args.run_dir, check_images=args.check_images, quantize=args.int8)
    for written in filter(None, (report, report.int8)):
        print(written.describe())
        print(written.path)
    return 0


def cmd_push(args) -> int:
    from os import environ

    from .export import push_to_hub

    token = None
    if args.token_env:
        token = environ.get(args.token_env, "").strip()
        if not token:
            raise ValueError(f"The environment variable {args.token_env} holds no token.")
    url = push_to_hub(args.run_dir, args.repo_id, token=token, private=not args.public)
    print(url)
    return 0


def cmd_compare(args) -> int:
    from pathlib import Path

    from . import runs

    folders = []
    for given in map(Path, args.runs):
        if not given.is_dir():
            raise ValueError(f"'{given}' is not a folder.")
        nested = sorted(p for p in given.iterdir() if p.is_dir() and runs.run_record(p))
        folders += [given] if runs.run_record(given) else nested
    table = runs.compare(folders)
    if table.empty:
        raise ValueError("No run folder with a saved model was found there.")
    shown = table.assign(
        val_accuracy=table["val_accuracy"].map(lambda v: "" if v is None or v != v else f"{v:.1%}"),
        val_macro_f1=table["val_macro_f1"].map(lambda v: "" if v is None or v != v else f"{v:.3f}"),
    )
    print(shown.to_string(index=False), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json({"runs": table.to_dict("records")})
    return 0


def stage_bar():
    """A progress bar for work in stages (decoding, embeddings, ...), and its callback."""
    from tqdm import tqdm

    bar = tqdm(total=0, leave=False)

    def progress(what: str, done: int, total: int) -> None:
        if bar.desc != what:
            bar.reset(total)
            bar.set_description_str(what)
        bar.n = done
        bar.refresh()

    return bar, progress


def cmd_self_train(args) -> int:
    from .data import load_dataset
    from .methods import self_train

    config = make_config(data=args.data, **_given(args, DATA_SETTINGS + EMBEDDING_SETTINGS))
    dataset = load_dataset(config.data, config.val_fraction, config.seed)
    if dataset.problems():
        print(f"cannot train: {dataset.problems()[0]}", file=sys.stderr)
        return 1
    bar, progress = stage_bar()
    try:
        result = self_train(config, dataset, args.unlabelled, args.threshold, args.rounds, progress)
    finally:
        bar.close()
    if args.csv:
        result.pseudo_labels.to_csv(args.csv, index=False)
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    say(result.per_class.to_string(index=False))
    for row in result.skipped.itertuples():
        say(f"skipped {row.path}: {row.reason}")
    say(result.describe())
    if args.json:
        print_json(
            {
                "threshold": result.threshold,
                "rounds": result.rounds,
                "unlabelled": len(result.pseudo_labels),
                "taken": result.taken,
                "val_images": result.val_images,
                "val_accuracy_before": result.val_accuracy_before,
                "val_accuracy_after": result.val_accuracy_after,
                "per_class": result.per_class.to_dict("records"),
                "skipped": result.skipped.to_dict("records"),
            }
        )
    return 0


def cmd_adabn(args) -> int:
    from .methods import adapt_batchnorm

    bar, progress = stage_bar()
    try:
        result = adapt_batchnorm(
            args.run_dir, args.target, args.labelled or None, args.out or None, progress=progress
        )
    finally:
        bar.close()
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    for path, reason in result.skipped:
        say(f"skipped {path}: {reason}")
    say(result.describe())
    if args.json:
        print_json(
            {
                "run_dir": str(result.run_dir),
                "from_run": str(result.source_run),
                "batchnorm_layers": result.layers,
                "target_images": result.target_images,
                "labelled_images": result.labelled_images,
                "accuracy_before": result.accuracy_before,
                "accuracy_after": result.accuracy_after,
            }
        )
    else:
        print(result.run_dir)
    return 0


def cmd_distill(args) -> int:
    from .methods import distill

    bar, progress = stage_bar()
    try:
        report = distill(
            args.run_dir,
            args.student,
            out=args.out or None,
            epochs=args.epochs,
            temperature=args.temperature,
            alpha=args.alpha,
            unlabelled_paths=args.unlabelled,
            img_size=args.img_size,
            progress=progress,
            weights=args.weights,
        )
    finally:
        bar.close()
    print(report.describe(), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json(
            {
                "run_dir": str(report.run),
                "teacher": str(report.teacher),
                "status": report.status,
                "table": report.table.to_dict("records"),  # a refused int8 row: nulls, a note
            }
        )
    return 0
