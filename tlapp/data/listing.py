"""Finding the labelled images in a folder layout or a CSV: (path, label, split) rows.

Layouts: `<class>/<image>`, `train|val|test/<class>/<image>` (a lone wrapper folder is stepped
into), or a CSV with `path,label` and optionally `split`. Hidden and system files are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import DataError
from .images import IMAGE_SUFFIXES

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def image_files(inputs: list[str | os.PathLike]) -> list[Path]:
    """Image files named directly or found (recursively) in the folders given, in order."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in _files_under(item) if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"'{item}' does not exist.")
    return files


# ----------------------------------------------------------------------------- layouts
def _is_hidden(name: str) -> bool:
    return (
        name.startswith(".")
        or name.startswith("._")
        or name in ("__MACOSX", "Thumbs.db", "desktop.ini")
    )


def _visible_children(folder: Path) -> tuple[list[Path], list[Path]]:
    entries = sorted(p for p in folder.iterdir() if not _is_hidden(p.name))
    return [p for p in entries if p.is_dir()], [p for p in entries if p.is_file()]


def _files_under(folder: Path) -> list[Path]:
    """All visible files below a folder (nested folders included), in a stable order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        out += [Path(dirpath) / f for f in sorted(filenames) if not _is_hidden(f)]
    return out


def find_data_root(folder: Path) -> Path:
    """Step into a lone wrapper folder (e.g. `flowers/` inside a zip) until classes show."""
    dirs, files = _visible_children(folder)
    while len(dirs) == 1 and not files:
        inner_dirs, inner_files = _visible_children(dirs[0])
        if not inner_dirs:  # the lone folder holds images: it is a class, not a wrapper
            break
        folder, dirs, files = dirs[0], inner_dirs, inner_files
    return folder


def _list_folder(folder: Path):
    """List (path, label, split) for a class-folder or a train/val-folder layout.

    Returns the listing, the skipped files, the layout's name and the declared class names
    (a class folder with no usable image still counts, so the user is told it is empty)."""
    root = find_data_root(folder)
    dirs, loose = _visible_children(root)
    skipped = [(str(f), "not inside a class folder") for f in loose]
    listed, declared = [], set()
    splits = {d: SPLIT_ALIASES.get(d.name.lower()) for d in dirs}
    if dirs and all(splits.values()) and "train" in splits.values():
        for d, split in splits.items():
            class_dirs, split_loose = _visible_children(d)
            skipped += [(str(f), f"not inside a class folder of {d.name}/") for f in split_loose]
            listed += _list_classes(class_dirs, split, skipped)
            declared |= {c.name for c in class_dirs}
        return listed, skipped, "train/val folders", declared
    listed = _list_classes(dirs, None, skipped)
    return listed, skipped, "one folder per class", {d.name for d in dirs}


def _list_classes(class_dirs: list[Path], split: str | None, skipped: list) -> list:
    listed = []
    for d in class_dirs:
        for f in _files_under(d):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                listed.append((str(f), d.name, split))
            else:
                skipped.append((str(f), f"not an image file type ({f.suffix or 'no extension'})"))
    return listed


def _list_csv(csv_path: Path) -> list[tuple[str, str, str | None]]:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"'{csv_path.name}' cannot be read as a CSV file ({err}).") from None
    table.columns = [c.strip().lower() for c in table.columns]
    if not {"path", "label"} <= set(table.columns):
        raise DataError(
            f"'{csv_path.name}' needs a header row with the columns path,label "
            f"(found: {', '.join(table.columns)})."
        )
    base = csv_path.parent
    listed = []
    for row in table.itertuples(index=False):
        path = Path(row.path.strip())
        split = (
            SPLIT_ALIASES.get(getattr(row, "split", "").strip().lower())
            if "split" in table.columns
            else None
        )
        listed.append((str(path if path.is_absolute() else base / path), row.label.strip(), split))
    return listed
