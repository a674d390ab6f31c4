"""Classes made on the page, without a folder: the visitor names a class, drops images on it
or takes them with the webcam, renames or deletes it. The set is a folder of the session's own
with one subfolder per class; training reads a snapshot of it, so that editing the set never
changes files a run is reading.

    classes = ClassSet(session.workdir / "classes")
    classes.add("cat")
    classes.add_images("cat", ["/tmp/upload/1.jpg"], settings.limits)
    root = classes.snapshot(session.data_folder("classes"))   # then load_dataset(root)
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ..data import DataError, Limits
from ..data.images import IMAGE_SUFFIXES

# A class named like a split folder would make the set read as train/ and val/ folders.
RESERVED = {"train", "val", "valid", "validation", "test"}
MAX_NAME = 60


class ClassSet:
    """One visitor's classes, one subfolder each; every method says in a sentence what is
    wrong (a DataError) rather than failing on a bad name."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir())

    def images(self, name: str) -> list[Path]:
        folder = self.folder / name
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def listing(self) -> list[tuple[str, str]]:
        """(class, file name) of every image: what a snapshot must match."""
        return [(name, p.name) for name in self.names() for p in self.images(name)]

    def counts(self) -> dict[str, int]:
        return {name: len(self.images(name)) for name in self.names()}

    def ready(self) -> bool:
        """Two classes or more with images in each: enough to train."""
        counts = self.counts()
        return len(counts) >= 2 and all(counts.values())

    def add(self, name: str) -> str:
        name = self._valid(name)
        if name in self.names():
            raise DataError(f"There is already a class '{name}': give the new one another name.")
        (self.folder / name).mkdir(parents=True)
        return name

    def rename(self, old: str, new: str) -> str:
        self._existing(old)
        new = self._valid(new)
        if new != old and new in self.names():
            raise DataError(f"There is already a class '{new}': choose another name.")
        (self.folder / old).rename(self.folder / new)
        return new

    def delete(self, name: str) -> None:
        shutil.rmtree(self.folder / self._existing(name))

    def add_images(self, name: str, files: list[str], limits: Limits) -> int:
        """Copy the images into the class (each under a name of its own); returns how many."""
        self._existing(name)
        files = [Path(f) for f in files or []]
        total = sum(self.counts().values()) + len(files)
        if total > limits.max_files:
            raise DataError(
                f"That would make {total:,} images; the limit here is {limits.max_files:,}."
            )
        if sum(f.stat().st_size for f in files) > limits.max_bytes:
            raise DataError(
                f"These images hold more than {limits.max_bytes / 2**20:,.0f} MB, the limit "
                "here: add fewer at a time."
            )
        for f in files:
            suffix = f.suffix.lower() if f.suffix.lower() in IMAGE_SUFFIXES else ".png"
            shutil.copyfile(f, self.folder / name / f"{f.stem[:40]}-{uuid.uuid4().hex[:6]}{suffix}")
        return len(files)

    def snapshot(self, target: Path) -> Path:
        """A copy of the set at `target` (hard links where the disk allows, so it costs no
        space) for a run to read while the set is edited."""
        for name in self.names():
            (target / name).mkdir(parents=True, exist_ok=True)
            for image in self.images(name):
                try:
                    os.link(image, target / name / image.name)
                except OSError:
                    shutil.copyfile(image, target / name / image.name)
        return target

    def _existing(self, name: str | None) -> str:
        if not name or name not in self.names():
            raise DataError("Choose a class first (click its name in the list).")
        return name

    @staticmethod
    def _valid(name: str | None) -> str:
        name = (name or "").strip()
        if not name:
            raise DataError("Type a name for the class first, e.g. 'cat'.")
        if len(name) > MAX_NAME:
            raise DataError(f"Class names have at most {MAX_NAME} characters: shorten it.")
        if any(c in name for c in '/\\:*?"<>|') or name.startswith(".") or name in {"..", "."}:
            raise DataError(
                f"'{name}' cannot be a class name: use letters, digits, spaces or dashes."
            )
        if name.lower() in RESERVED:
            raise DataError(
                f"'{name}' names a split of the data, not a class: choose another name."
            )
        return name
