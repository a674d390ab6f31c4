"""What arrives from outside: zips unpacked and browser uploads reassembled, within limits.

    folder, left_out = extract_zip(Path("photos.zip"), target)   # refuses bombs and escapes
    folder = assemble_upload(files, reported_paths, target)     # a folder picked in a browser

Nothing is ever written outside `target`, and a folder the app did not make is never replaced.
"""

from __future__ import annotations

import os
import shutil
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import DataError
from .images import MAX_IMAGE_PIXELS
from .listing import _is_hidden

EXTRACTED_MARK = ".tlapp-extracted"  # marks a folder the app unpacked, so it may replace it


@dataclass(frozen=True)
class Limits:
    """What one upload may hold. The app enforces these itself (a web server's per-file limit
    says nothing about a zip's contents or a folder's file count)."""

    max_bytes: int = 4 << 30  # total size, unpacked
    max_files: int = 100_000
    max_pixels: int = MAX_IMAGE_PIXELS  # per image; larger ones are skipped before decoding


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
