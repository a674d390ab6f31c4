"""`tlapp check`: whether a dataset can be trained, and its health."""

from __future__ import annotations

import functools
import sys

from ..config import make_config
from .args import DATA_SETTINGS, data_arg, given_settings, json_arg, print_json, settings_args
from .progress import Stages


def add_check(command) -> None:
    check = command("check", help="scan a dataset and say whether it can be trained")
    data_arg(check)
    settings_args(check, DATA_SETTINGS)
    json_arg(check)
    check.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from ..data import config_dataset
    from ..health import check_health

    config = make_config(data=args.data, **given_settings(args, DATA_SETTINGS))
    show = Stages()
    dataset = config_dataset(config, progress=show)
    show.close()
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    say(dataset.report().to_string(index=False))
    if len(dataset.skipped):
        say(f"\nSkipped {len(dataset.skipped)} files:")
        say(dataset.skipped.to_string(index=False))
    say("\n" + dataset.summary())
    for warning in dataset.warnings():
        say(f"note: {warning}")
    findings = check_health(dataset, show)
    show.close()
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
