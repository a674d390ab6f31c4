"""A run folder as a zip, made while it is sent: a download writes no copy of it to disk.

    StreamingResponse(stream_zip(run_dir), media_type="application/zip")   # bytes, in pieces
    zipped_files(run_dir)      # what the zip holds: every file but the resume checkpoint

The entries sit under the run folder's own name, so the zip unpacks into one folder. Weights
and pictures are stored as they are; text files are deflated.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from .runs import CHECKPOINT


def zipped_files(run_dir: Path) -> list[Path]:
    """What a downloaded run holds: every file but the resume checkpoint (which doubles it)."""
    return [
        path
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
        and path.relative_to(run_dir).parts[0] != CHECKPOINT
        and not path.name.startswith(".")
    ]


# Weights are stored as they are: deflating them saves ~10% for seconds of a shared CPU.
STORED = {".safetensors", ".onnx", ".pt", ".pth", ".png", ".jpg"}


def stream_zip(run_dir: str | os.PathLike, chunk: int = 1 << 20):
    """The run folder as a zip, yielded in pieces as it is made: a download needs no copy of the
    weights on disk. zipfile writes to an unseekable stream with data descriptors."""
    run_dir, pipe = Path(run_dir), _Pipe()
    with zipfile.ZipFile(pipe, "w") as archive:
        for path in zipped_files(run_dir):
            name = str(Path(run_dir.name) / path.relative_to(run_dir))
            method = zipfile.ZIP_STORED if path.suffix in STORED else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = method
            with open(path, "rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                while block := src.read(chunk):
                    dst.write(block)
                    yield pipe.take()
        yield pipe.take()
    yield pipe.take()  # the central directory, written on close


class _Pipe:
    """A write-only file that hands on what was written to it since the last `take`."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data
