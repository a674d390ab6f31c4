"""What the browser sent (a zip, a folder's files, a typed path) turned into a dataset.

    dataset = dataset_from_upload(settings, session, "photos.zip", "", shares=(0.2, 0.15))
    dataset = dataset_from_folder_upload(settings, session, files, reported_paths, 0.2)

Every upload unpacks into a new folder of the visitor's own, within the app's `Limits`; folders
on the server are read only when the settings allow it.
"""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path

import pandas as pd

from ..data import DataError, Dataset, assemble_upload, extract_zip, image_files, load_dataset
from ..health import check_health
from .sessions import Session
from .settings import AppSettings

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample" / "digits"  # package data


class Sample:
    """The sample digits, read and health-checked once per app and split: in a workshop thirty
    visitors press the same button. The files are the package's own and never change, and a
    Dataset is never modified (corrections make a new one), so visitors can share it."""

    def __init__(self, folder: Path = SAMPLE_DATA):
        self.folder, self._loaded, self._lock = folder, {}, threading.Lock()

    def load(self, shares: tuple[float, float]) -> tuple[Dataset, pd.DataFrame]:
        """The dataset split with `shares` (validation, test), and its health findings."""
        with self._lock:
            if shares not in self._loaded:
                dataset = split_dataset(self.folder, shares)
                self._loaded[shares] = (dataset, check_health(dataset))
            return self._loaded[shares]


def split_dataset(source, shares: tuple[float, float], **options) -> Dataset:
    """load_dataset with the page's validation and test shares."""
    return load_dataset(source, shares[0], test_fraction=shares[1], **options)


# ----------------------------------------------------------------------------- data step
def upload_bytes(files: str | list[str] | None) -> int:
    """What taking an upload in will write to the visitor's folder: a zip's unpacked size (its
    directory says, before anything is extracted), another file's own size."""
    total = 0
    for path in [files] if isinstance(files, str) else files or []:
        path = Path(path)
        try:
            if path.suffix.lower() == ".zip":
                with zipfile.ZipFile(path) as archive:
                    total += sum(info.file_size for info in archive.infolist())
            else:
                total += path.stat().st_size
        except (OSError, zipfile.BadZipFile):
            continue  # unreadable: loading it says so, and writes nothing
    return total


def dataset_from_upload(
    settings: AppSettings,
    session: Session,
    upload: str | None,
    local_path: str,
    shares: tuple[float, float],
) -> Dataset:
    if local_path and local_path.strip():
        if not settings.allow_local_paths:
            raise DataError(
                "Reading folders on the server is turned off here: upload a .zip instead."
            )
        return split_dataset(Path(local_path.strip()).expanduser(), shares, limits=settings.limits)
    if not upload:
        raise DataError(
            "Choose data first: upload a .zip of class folders, or use the sample digits."
        )
    upload = Path(upload)
    if upload.suffix.lower() == ".zip":
        target = session.data_folder(upload.stem)
        return split_dataset(upload, shares, extract_to=target, limits=settings.limits)
    if upload.suffix.lower() == ".csv" and settings.allow_local_paths:
        return split_dataset(upload, shares, limits=settings.limits)
    raise DataError(
        f"'{upload.name}' is not a .zip of class folders: zip the folder that holds "
        "one subfolder per class and upload that."
    )


def dataset_from_folder_upload(
    settings: AppSettings,
    session: Session,
    files: list[str] | None,
    reported: str,
    shares: tuple[float, float],
) -> Dataset:
    """A folder chosen or dropped in the browser: rebuild it from the files and their paths."""
    if not files:
        raise DataError(
            "The folder arrived empty: choose a folder that holds one subfolder per class."
        )
    if len(files) == 1 and Path(files[0]).suffix.lower() == ".zip":
        target = session.data_folder(Path(files[0]).stem)
        return split_dataset(files[0], shares, extract_to=target, limits=settings.limits)
    try:
        paths = json.loads(reported or "[]")
    except json.JSONDecodeError:
        paths = []
    target = session.data_folder("folder")
    folder = assemble_upload(files, paths, target, settings.limits)
    return split_dataset(folder, shares, limits=settings.limits)


def weights_choice(mode: str, upload: str | None, path: str, settings: AppSettings) -> str:
    if mode != "from a file":
        return mode
    if upload:
        return upload
    if path and path.strip():
        if not settings.allow_local_paths:
            raise DataError(
                "Reading files on the server is turned off here: upload the weights file."
            )
        return str(Path(path.strip()).expanduser())
    raise DataError(
        "Choose a weights file (.safetensors or .pth) or a previous run folder, "
        "or pick weights 'auto'."
    )


def uploaded_images(files: list[str] | None, folder: Path, settings: AppSettings) -> list[Path]:
    """Image files from what the browser sent: images as they are, zips unpacked into `folder`
    within the app's limits."""
    paths = []
    for f in map(Path, files or []):
        if f.suffix.lower() == ".zip":
            extracted, _ = extract_zip(f, folder / f.stem, settings.limits)
            paths += image_files([extracted])
        else:
            paths.append(f)
    return paths
