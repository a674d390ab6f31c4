"""What of a run's record may be published: run.json with the trainer's local paths cut.

    record = public_record("runs/mine")              # run.json as it goes to the hub
    text = public_text(note, info, run_dir)          # one string of it, cut the same way

What is published never names the computer it was trained on: every path the run recorded (its
data, output, cache and weights settings, and the run folder itself) is cut to its last part.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import runs

# TrainConfig settings that are paths on the computer that trained the run.
PATH_SETTINGS = ("data", "out", "runs_root", "cache_dir", "corrections", "weights")


# The weights setting's words, which name no path.
WEIGHT_WORDS = {"auto", "pretrained", "none", ""}


def public_record(run_dir: str | os.PathLike) -> dict:
    """run.json with the paths of the computer that trained it cut to their last part."""
    run_dir = Path(run_dir)
    info = runs.read_config(run_dir)
    return scrub(info, local_paths(run_dir, info))


def local_paths(run_dir: Path, info: dict) -> list[str]:
    """Every local path the run recorded, as written and resolved, longest first."""
    config = info.get("config") or {}
    found = {str(run_dir), str(run_dir.resolve())}
    for key in PATH_SETTINGS:
        value = config.get(key)
        if isinstance(value, str) and value.strip() and value.strip() not in WEIGHT_WORDS:
            found.add(value)
    source = (info.get("dataset") or {}).get("source")
    if isinstance(source, str) and source:
        found.add(source)
    expanded = set()
    for path in found:
        expanded |= {path, str(Path(path).resolve()), Path(path).resolve().as_posix()}
    # Longest first, so a folder inside another is replaced whole.
    return sorted((p for p in expanded if Path(p).name and p not in (".", "/")), key=len)[::-1]


def scrub(value, paths: list[str]):
    """`value` (a record, a list or a string) with each of `paths` cut to its last part."""
    if isinstance(value, dict):
        return {k: scrub(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, paths) for v in value]
    if isinstance(value, str):
        for path in paths:
            if path in value:
                value = value.replace(path, Path(path).name)
        return value
    return value


def public_text(text: str, info: dict, run_dir: Path) -> str:
    """One string of the run's record (such as its weights note), cut as the record is."""
    return scrub(str(text), local_paths(run_dir, info))
