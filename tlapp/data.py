"""Turn what the user gave (a folder, a zip or a CSV) into a labelled, split dataset.

    ds = load_dataset("photos/", val_fraction=0.2, seed=0)
    print(ds.report())     # images per class and split
    print(ds.skipped)      # files that were not used, with the reason
    ds.check()             # raises DataError with a one-line reason if it cannot be trained

Accepted layouts: `<class>/<image>`, `train|val|test/<class>/<image>`, a `.zip` of either
(a single top-level folder inside is fine), or a CSV with `path,label` (and optionally `split`).
Safe image opening lives here and only here: `open_image` applies EXIF orientation, flattens
alpha onto white, scales 16-bit greyscale and always returns an 8-bit RGB image.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import unicodedata
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

# Still-image formats we decode; anything else (PSD, EPS, exotic plugins) is refused.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 50_000_000  # ~7000x7000; larger files are skipped before decoding
MAX_ASPECT = 20  # a 1000x1 strip would become a huge tensor once its short side is resized up
EXTRACTED_MARK = ".tlapp-extracted"  # marks a folder the app unpacked, so it may replace it
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Limits:
    """What one upload may hold. The app enforces these itself (a web server's per-file limit
    says nothing about a zip's contents or a folder's file count)."""

    max_bytes: int = 4 << 30  # total size, unpacked
    max_files: int = 100_000
    max_pixels: int = MAX_IMAGE_PIXELS  # per image; larger ones are skipped before decoding


class DataError(ValueError):
    """The data cannot be used; the message is one sentence meant for the user."""


class ImageError(ValueError):
    """One file cannot be used as an image; the message is the reason shown to the user."""


# ----------------------------------------------------------------------------- images
def open_image(
    path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Open one image as 8-bit RGB, or raise ImageError with a readable reason.

    `draft_size` lets JPEG decode at a reduced scale when the result will be resized anyway.
    """
    try:
        with Image.open(path, formats=ALLOWED_FORMATS) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(f"too large ({im.width}x{im.height} pixels)")
            if max(im.size) > MAX_ASPECT * max(1, min(im.size)):
                raise ImageError(f"too long and thin ({im.width}x{im.height} pixels)")
            if draft_size and im.format == "JPEG":
                im.draft("RGB", (draft_size, draft_size))
            im.load()
            return to_rgb(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError("too large (decompression bomb)") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"cannot be decoded ({err})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha is flattened onto white, 16-bit is rescaled."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / (65535.0 if hi > 255 else max(hi, 1.0) if im.mode == "F" else 255.0)
        im = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def probe_image(
    path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[int, int, str]:
    """Decode a file once to prove it is usable; returns (width, height, mode) as stored."""
    with Image.open(path, formats=ALLOWED_FORMATS) as im:
        size, mode = im.size, im.mode
    open_image(path, max_pixels, draft_size=64)  # full decode at reduced scale catches truncation
    return size[0], size[1], mode


def _probe_all(paths: list[str], max_pixels: int = MAX_IMAGE_PIXELS) -> list[tuple | str]:
    """Probe many files in parallel (Pillow releases the GIL while decoding)."""

    def one(p):
        try:
            return probe_image(p, max_pixels)
        except ImageError as err:
            return str(err)
        except Image.DecompressionBombError:
            return "too large (decompression bomb)"
        except (OSError, Image.UnidentifiedImageError):
            return "not an image Pillow can read"

    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        return list(pool.map(one, paths))


# ----------------------------------------------------------------------------- corrections
@dataclass
class Corrections:
    """Fixes made from the page: images moved to another class or left out. Kept in a file of
    their own (JSON, paths relative to the data's root), never by touching the images."""

    file: Path
    relabel: dict[str, str] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)

    @staticmethod
    def load(file: str | os.PathLike) -> "Corrections":
        file = Path(file)
        if not file.exists():
            return Corrections(file)
        data = json.loads(file.read_text(encoding="utf-8"))
        return Corrections(file, dict(data.get("relabel", {})), list(data.get("exclude", [])))

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"relabel": self.relabel, "exclude": self.exclude}, indent=2, ensure_ascii=False
            ),
            encoding="utf-8",
        )
        os.replace(tmp, self.file)

    def move(self, relative: str, label: str) -> None:
        self.relabel[relative] = label
        if relative in self.exclude:
            self.exclude.remove(relative)
        self.save()

    def drop(self, relative: str) -> None:
        self.relabel.pop(relative, None)
        if relative not in self.exclude:
            self.exclude.append(relative)
        self.save()

    def __len__(self) -> int:
        return len(self.relabel) + len(self.exclude)


# ----------------------------------------------------------------------------- dataset
@dataclass
class Dataset:
    """Labelled images with a split, plus everything that was left out and why."""

    samples: pd.DataFrame  # columns: path, label, split, width, height, mode
    classes: list[str]
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    layout: str = ""
    root: str = ""
    empty_classes: list[str] = field(default_factory=list)
    val_fraction: float = 0.2  # the share split off when the data has no val/ folder

    def split(self, name: str) -> pd.DataFrame:
        return self.samples[self.samples["split"] == name].reset_index(drop=True)

    def targets(self, name: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return self.split(name)["label"].map(index).to_numpy(dtype=np.int64, copy=True)

    def report(self) -> pd.DataFrame:
        """Images per class and split, with a total row."""
        table = (
            pd.crosstab(self.samples["label"], self.samples["split"])
            if len(self.samples)
            else pd.DataFrame()
        )
        table = table.reindex(index=self.classes + self.empty_classes, fill_value=0)
        cols = [s for s in SPLITS if s in table.columns or s != "test"]
        table = table.reindex(columns=cols, fill_value=0)
        table["total"] = table.sum(axis=1)
        table.loc["(all classes)"] = table.sum(axis=0)
        return table.rename_axis("class").reset_index().rename_axis(None, axis=1)

    def problems(self) -> list[str]:
        """Everything that stops training, each a sentence saying what to do."""
        out = []
        for c in self.empty_classes:
            out.append(f"Class '{c}' has no usable images: add images to it or remove the folder.")
        if len(self.classes) < 2:
            found = f"found {len(self.classes)}" + (
                f" ('{self.classes[0]}')" if self.classes else ""
            )
            out.append(
                f"At least 2 classes are needed and {found}: put each class's images "
                "in a subfolder named after the class."
            )
            return out
        train_counts = self.split("train")["label"].value_counts()
        for c in self.classes:
            if train_counts.get(c, 0) == 0:
                out.append(f"Class '{c}' has no training images: add images to train/{c}.")
        if len(self.split("val")) == 0:
            out.append(
                "There are no validation images: give each class at least 2 images "
                "or add a val/ folder."
            )
        return out

    def relative(self, path: str) -> str:
        """A sample's path relative to the data's root: how corrections name it."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def corrected(self, corrections: Corrections) -> "Dataset":
        """This dataset with the corrections applied; each image keeps its split."""
        if not len(corrections):
            return self
        samples = self.samples.copy()
        relative = samples["path"].map(self.relative)
        dropped = relative.isin(corrections.exclude)
        moved = relative.map(corrections.relabel)
        samples.loc[moved.notna(), "label"] = moved[moved.notna()]
        skipped = pd.concat(
            [
                self.skipped,
                pd.DataFrame({"path": samples.loc[dropped, "path"], "reason": "left out by you"}),
            ],
            ignore_index=True,
        )
        samples = samples[~dropped].reset_index(drop=True)
        return replace(
            self,
            samples=samples,
            skipped=skipped,
            classes=sorted(samples["label"].unique().tolist()),
        )

    def warnings(self) -> list[str]:
        """What does not stop training but deserves a word, each a sentence."""
        out = []
        train, val = (
            self.split("train")["label"].value_counts(),
            self.split("val")["label"].value_counts(),
        )
        for c in self.classes:
            if train.get(c, 0) and not val.get(c, 0) and len(val):
                out.append(
                    f"Class '{c}' has too few images to set one aside: it has no validation "
                    "image, so its accuracy cannot be measured. Add images to it."
                )
        return out

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise DataError(problems[0])

    def summary(self) -> str:
        counts = self.samples["split"].value_counts()
        parts = [f"{counts.get(s, 0)} {s}" for s in SPLITS if counts.get(s, 0)]
        return (
            f"{len(self.samples)} images in {len(self.classes)} classes ({', '.join(parts)}); "
            f"{len(self.skipped)} files skipped; layout: {self.layout}."
        )


def load_dataset(
    source: str | os.PathLike,
    val_fraction: float = 0.2,
    seed: int = 0,
    extract_to: str | os.PathLike | None = None,
    limits: Limits = Limits(),
    corrections: str | os.PathLike | None = None,
) -> Dataset:
    """Scan a folder, a .zip or a .csv into a Dataset. Never raises for individual bad files."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"'{source}' does not exist: check the path.")
    unpacked = []
    if source.is_file() and source.suffix.lower() == ".zip":
        # Unpacked beside nothing of the user's: a fresh folder unless the caller gives one.
        target = (
            Path(extract_to)
            if extract_to
            else Path(tempfile.mkdtemp(prefix=f"tlapp-{source.stem}-")) / source.stem
        )
        source, unpacked = extract_zip(source, target, limits)
    if source.is_file() and source.suffix.lower() == ".csv":
        listed, skipped, layout = _list_csv(source), [], "CSV of path,label"
        declared = {label for _, label, _ in listed}
    elif source.is_dir():
        listed, skipped, layout, declared = _list_folder(source)
    else:
        raise DataError(f"'{source.name}' is not a folder, a .zip or a .csv file.")
    if len(listed) > limits.max_files:
        raise DataError(
            f"There are {len(listed):,} images; the limit here is "
            f"{limits.max_files:,}: use a subset."
        )
    dataset = _build(
        listed,
        unpacked + skipped,
        declared,
        layout,
        str(source),
        val_fraction,
        seed,
        limits.max_pixels,
    )
    return dataset.corrected(Corrections.load(corrections)) if corrections else dataset


def _build(
    listed: list[tuple[str, str, str | None]],
    skipped: list[tuple[str, str]],
    declared: set[str],
    layout: str,
    root: str,
    val_fraction: float,
    seed: int,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Dataset:
    """Probe every listed file, drop the unreadable ones and assign splits."""
    paths = [p for p, _, _ in listed]
    results = _probe_all(paths, max_pixels)
    rows = []
    for (path, label, split), res in zip(listed, results):
        if isinstance(res, str):
            skipped.append((path, res))
        else:
            rows.append((path, label, split, *res))
    samples = pd.DataFrame(rows, columns=["path", "label", "split", "width", "height", "mode"])
    classes = sorted(samples["label"].unique().tolist())
    samples = _assign_splits(samples, val_fraction, seed)
    return Dataset(
        samples=samples,
        classes=classes,
        layout=layout,
        root=root,
        skipped=pd.DataFrame(skipped, columns=["path", "reason"]),
        empty_classes=sorted(c for c in declared if c not in classes),
        val_fraction=val_fraction,
    )


def _assign_splits(samples: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Keep a given split; otherwise a stratified train/val split with a fixed seed."""
    samples = samples.sort_values(["label", "path"]).reset_index(drop=True)
    if samples["split"].isin(["val"]).any():
        samples["split"] = samples["split"].fillna("train")
        return samples
    samples["split"] = samples["split"].fillna("train")
    for label, idx in samples[samples["split"] == "train"].groupby("label").groups.items():
        idx = list(idx)
        n_val = min(len(idx) - 1, max(1, round(len(idx) * val_fraction))) if len(idx) > 1 else 0
        random.Random(f"{seed}:{label}").shuffle(idx)
        samples.loc[idx[:n_val], "split"] = "val"
    return samples


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


# ----------------------------------------------------------------------------- zip
def fresh_folder(target: Path) -> None:
    """An empty folder at `target`; one that is there already is replaced only if the app made
    it (it carries EXTRACTED_MARK), so a user's own folder is never deleted."""
    if target.exists():
        if not (target / EXTRACTED_MARK).exists() and any(target.iterdir()):
            raise DataError(
                f"'{target}' already exists and is not the app's: choose another place."
            )
        shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / EXTRACTED_MARK).touch()


def extract_zip(zip_path: Path, target: Path, limits: Limits = Limits()) -> tuple[Path, list]:
    """Extract a zip into `target`; returns it with the entries left out and why.

    Refused before extracting: too many entries, or a declared unpacked size over the limit.
    Skipped: links, paths that would land outside `target` (`..`, absolute, drive letters) and
    names that collide once normalised. Bytes are counted while extracting (headers can lie)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        raise DataError(f"'{zip_path.name}' is not a valid zip file.") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > limits.max_files:
            raise DataError(
                f"'{zip_path.name}' holds {len(members):,} files; the limit here is "
                f"{limits.max_files:,}."
            )
        if sum(m.file_size for m in members) > limits.max_bytes:
            raise DataError(
                f"'{zip_path.name}' unpacks to more than {limits.max_bytes / 2**20:,.0f} MB, "
                "the limit here."
            )
        fresh_folder(target)
        skipped, written, budget = [], set(), limits.max_bytes
        for m in members:
            dest, reason = _zip_destination(m, target, written)
            if dest is None:
                if reason:
                    skipped.append((f"{zip_path.name}:{m.filename}", reason))
                continue
            try:
                budget -= _copy_counted(archive, m, dest, budget, zip_path.name)
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise DataError(
                    f"'{zip_path.name}' is damaged ({err}): zip the folder again."
                ) from None
    return target, skipped


def _zip_destination(
    member: zipfile.ZipInfo, target: Path, written: set
) -> tuple[Path | None, str]:
    """Where a zip entry goes, or (None, reason); hidden entries are dropped without a word."""
    name = unicodedata.normalize("NFC", member.filename.replace("\\", "/"))
    if (member.external_attr >> 16) & 0o170000 == 0o120000:
        return None, "a link inside the zip (not extracted)"
    dest = safe_destination(name, target)
    if dest is None:
        return None, "a path leading outside the zip's folder (not extracted)"
    if any(_is_hidden(part) for part in PurePosixPath(name).parts):
        return None, ""
    if dest in written:
        return None, "the same name as another file in the zip (not extracted)"
    written.add(dest)
    return dest, ""


def _copy_counted(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path, budget: int, zip_name: str
) -> int:
    """Copy one entry, stopping as soon as the upload's byte budget is spent."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    copied = 0
    with archive.open(member) as src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            copied += len(chunk)
            if copied > budget:
                out.close()
                dest.unlink(missing_ok=True)
                raise DataError(
                    f"'{zip_name}' unpacks to more than its headers say and past the "
                    "size limit here: it was not extracted."
                )
            out.write(chunk)
    return copied


def safe_destination(name: str, target: Path) -> Path | None:
    """`target / name` for a relative name from an upload, or None if it would escape `target`
    (`..`, absolute paths, drive letters)."""
    name = name.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ":" in parts[0] or ".." in parts:
        return None
    dest = (target / Path(*parts)).resolve()
    return dest if dest.is_relative_to(target.resolve()) else None


# ----------------------------------------------------------------------------- folder upload
def assemble_upload(
    files: list[str | os.PathLike],
    relative_paths: list[dict],
    target: Path,
    limits: Limits = Limits(),
) -> Path:
    """Rebuild an uploaded folder under `target` from the uploaded files and the paths the
    browser reported for them (`[{"path": "photos/cat/1.jpg", "size": 1234}, ...]`).

    Uploads keep only base names, so each file is matched to a reported path by name and size,
    in order; a file with no match is placed at the top, where it is listed as skipped."""
    files = [Path(f) for f in files]
    if len(files) > limits.max_files:
        raise DataError(
            f"The folder holds {len(files):,} files; the limit here is {limits.max_files:,}."
        )
    if sum(f.stat().st_size for f in files) > limits.max_bytes:
        raise DataError(
            f"The folder holds more than {limits.max_bytes / 2**20:,.0f} MB, the limit here."
        )
    by_key: dict[tuple[str, int], list[str]] = {}
    for entry in relative_paths if isinstance(relative_paths, list) else []:
        if not isinstance(entry, dict):
            continue
        path, size = str(entry.get("path", "")), entry.get("size", -1)
        size = size if isinstance(size, int) else -1
        by_key.setdefault((PurePosixPath(path).name, size), []).append(path)
    fresh_folder(target)
    for f in files:
        candidates = by_key.get((f.name, f.stat().st_size))
        relative = unicodedata.normalize("NFC", candidates.pop(0) if candidates else f.name)
        dest = safe_destination(relative, target) or safe_destination(f.name, target)
        if dest is None or dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    return target
