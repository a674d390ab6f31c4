"""Beyond fine-tuning: self-train, adabn, distill."""

from __future__ import annotations

import functools
import sys

from ..config import make_config
from .args import (
    DATA_SETTINGS,
    EMBEDDING_SETTINGS,
    data_arg,
    exit_code,
    given_settings,
    json_arg,
    positive,
    print_json,
    settings_args,
    trainable_dataset,
)
from .progress import Stages


def add_pseudo(command) -> None:
    pseudo = command(
        "self-train",
        help="pseudo-label unlabelled images where the head is sure, and see whether they help",
    )
    data_arg(pseudo)
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
        "--rounds", type=positive, default=1, help="label again with the refitted head"
    )
    pseudo.add_argument("--csv", default="", help="write every pseudo-label to this CSV file")
    json_arg(pseudo)
    settings_args(pseudo, DATA_SETTINGS + EMBEDDING_SETTINGS)
    pseudo.set_defaults(func=cmd_self_train)


def add_adabn(command) -> None:
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
    json_arg(adabn)
    adabn.set_defaults(func=cmd_adabn)


def add_distil(command) -> None:
    distil = command(
        "distill",
        help="teach a trained run to a smaller timm model, quantise it to int8, compare all three",
    )
    distil.add_argument("run_dir", help="the teacher: a finished run folder")
    distil.add_argument("--student", required=True, metavar="MODEL", help="a timm model name")
    distil.add_argument("--epochs", type=positive, default=10, help="the student's epochs")
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
        "--img-size", type=positive, default=None, help="default: the teacher's image size"
    )
    distil.add_argument("--out", default="", help="the student's run folder; empty: a new one")
    json_arg(distil)
    distil.set_defaults(func=cmd_distill)


def cmd_self_train(args) -> int:
    from ..methods import self_train

    config = make_config(data=args.data, **given_settings(args, DATA_SETTINGS + EMBEDDING_SETTINGS))
    dataset = trainable_dataset(config)
    if dataset is None:
        return 1
    progress = Stages()
    try:
        result = self_train(config, dataset, args.unlabelled, args.threshold, args.rounds, progress)
    finally:
        progress.close()
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
    from ..methods import adapt_batchnorm

    progress = Stages()
    try:
        result = adapt_batchnorm(
            args.run_dir, args.target, args.labelled or None, args.out or None, progress=progress
        )
    finally:
        progress.close()
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
    from ..methods import distill

    progress = Stages()
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
        progress.close()
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
    return exit_code(report.status)  # a diverged student is kept, but the command failed
