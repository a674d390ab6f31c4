"""`tlapp train` (and --resume) and `tlapp lr-find`, with a progress bar per stage (`progress`)."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
import time
from dataclasses import fields

from ..config import TrainConfig, make_config
from .args import (
    DATA_SETTINGS,
    MODEL_SETTINGS,
    RESUMABLE,
    data_arg,
    exit_code,
    given_settings,
    json_arg,
    print_json,
    settings_args,
    sweep_args,
    trainable_dataset,
)
from .progress import StageEvents, Stages


def add_train(command) -> None:
    train = command("train", help="train a classifier and write a run folder")
    data_arg(train, optional=True)  # optional: --resume needs none
    train.add_argument(
        "--resume",
        default="",
        metavar="RUN_DIR",
        help="continue a stopped or crashed run from its last finished epoch; with --epochs N, "
        "extend a finished run to N epochs in total",
    )
    json_arg(train)
    settings_args(train, [f.name for f in fields(TrainConfig) if f.name != "data"])
    train.set_defaults(func=cmd_train)


def add_find(command) -> None:
    find = command("lr-find", help="suggest a fine-tuning learning rate (as fastai's lr_find)")
    data_arg(find)
    settings_args(find, DATA_SETTINGS + MODEL_SETTINGS)
    sweep_args(find)
    find.set_defaults(func=cmd_lr_find)


def cmd_train(args) -> int:
    from ..data import DataError, config_dataset
    from ..models import preview_freeze
    from ..train import Job
    from ..train.distributed import launched_rank, process_group
    from ..train.job import train_quietly

    given = given_settings(args, [f.name for f in fields(TrainConfig) if f.name != "data"])
    if args.resume:
        config = resumed_config(args.resume, args.data, given)
    elif args.data:
        config = make_config(data=args.data, **given)
    else:
        raise DataError("Give the data to train on (a folder, .zip or CSV), or --resume RUN_DIR.")
    preview_freeze(config.model, config.freeze)  # a wrong model name or depth: exit 2, at once
    # Under torchrun, one process per GPU: rank 0 writes the run folder and prints.
    show = Stages()
    dataset = config_dataset(config, progress=show if launched_rank() == 0 else None)
    from . import STARTED  # when this process began: a time budget counts from there

    with process_group(config) as world:
        if not world.is_main:
            return train_quietly(config, dataset, resume=bool(args.resume))
        job = Job(
            config,
            dataset,
            resume=bool(args.resume),
            callbacks=[StageEvents(show)],
            started=STARTED,
        )
        with terminate_as_interrupt():
            return report(follow(job.start(), show), args.json)


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM stops the run as Ctrl-C does, and the run folder says how it ended: `kill`, a
    container or job scheduler stopping, or torchrun ending the other processes of a run one of
    whose processes failed (by default SIGTERM ends Python at once, leaving run.json at
    "training")."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resumed_config(run_dir: str, data: str, given: dict) -> TrainConfig:
    """The run's own configuration, with what may change on resuming: --epochs N extends a run
    to N epochs in total."""
    from .. import runs
    from ..train import resume_config

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
    return exit_code(state.status)


def follow(job, show: Stages):
    """Wait until the job ends, its stages shown on `show` by the job's StageEvents callback;
    Ctrl-C stops it and keeps the best model."""
    try:
        while job.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        job.stop()
        print("\nstopping after this batch…", file=sys.stderr)
    state = job.wait()
    show.close()
    return state


def cmd_lr_find(args) -> int:
    from ..train.lr_find import find_lr

    config = make_config(data=args.data, **given_settings(args, DATA_SETTINGS + MODEL_SETTINGS))
    show = Stages()  # scanning, decoding, embeddings, then the sweep
    dataset = trainable_dataset(config, show)
    if dataset is None:
        return 1
    sweep = {"start_lr": args.start_lr, "end_lr": args.end_lr, "num_it": args.num_it}
    try:
        finding = find_lr(config, dataset, progress=show, **sweep)
    except KeyboardInterrupt:
        print("\nstopped: no learning rate was found", file=sys.stderr)
        return 130
    finally:
        show.close()
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
