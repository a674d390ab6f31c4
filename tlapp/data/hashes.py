"""Content hashes of image files, remembered by (path, size, modification time).

    key = file_hash("photo.jpg")                  # blake2b of the bytes: identity by content
    keys = file_hashes(paths, progress=None)      # many at once; unchanged files are not read

The embedding cache, the duplicate check and the split name an image by the hash of its bytes,
and reading every byte of a folder of photos again on each run costs seconds. `file_hashes`
keeps an index in the cache folder (`default_cache_dir()`, i.e. `$TLAPP_CACHE` or
~/.cache/tlapp, file `file-hashes.json`) from each file's absolute path, size and modification
time (ns) to its hash, and reads only the files that are new or changed since: a file whose size
or modification time differs is hashed again.

The index only saves time, it is never trusted over the files: a missing, unreadable or corrupt
index is rebuilt, and one that cannot be written is left as it is. A writer merges its entries
with the index on disk and replaces the file in one step, so runs in other threads or processes
(several visitors on one server) never see half a file; at worst they lose each other's newest
entries, which the next run hashes again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .images import in_threads

INDEX_FILE = "file-hashes.json"
FORMAT = 1  # a different number on disk: the index is rebuilt
# A file modified this close to when it was hashed could change again within the same clock tick
# of its file system (2 s on FAT) and keep its size and time: git's "racily clean" entries. Such
# a file is hashed, but recorded only on a later run, once its time is safely in the past.
RACY_NS = 2_000_000_000
MAX_ENTRIES = 200_000  # beyond this, entries of files that are gone are dropped

_writing = threading.Lock()  # within one process, one merge-and-replace at a time


def default_cache_dir() -> Path:
    """Where caches live: $TLAPP_CACHE, else ~/.cache/tlapp."""
    return Path(os.environ.get("TLAPP_CACHE", Path.home() / ".cache" / "tlapp"))


def file_hash(path: str | os.PathLike) -> str:
    """The hash of a file's bytes (always read; `file_hashes` skips unchanged files)."""
    with open(path, "rb") as f:
        return hashlib.blake2b(f.read(), digest_size=16).hexdigest()


def file_hashes(
    paths: list[str],
    progress: Callable[[str, int, int], None] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[str]:
    """The hash of each file, in order: from the index when the file is unchanged, otherwise
    read now (in threads) and remembered. `progress(what, done, total)` hears of the reading."""
    index = Path(cache_dir or default_cache_dir()) / INDEX_FILE
    known = read_index(index)
    now = time.time_ns()
    stats = [_identity(p) for p in paths]
    hashes = [_lookup(known, s) for s in stats]
    missing = [i for i, h in enumerate(hashes) if h is None]
    if not missing:
        return hashes
    read = in_threads(file_hash, [paths[i] for i in missing], "Hashing images", progress)
    for i, digest in zip(missing, read):
        hashes[i] = digest
    fresh = {
        stats[i][0]: [*stats[i][1:], hashes[i]]
        for i in missing
        if stats[i] and now - stats[i][2] >= RACY_NS
    }
    if fresh:
        merge_index(index, fresh)
    return hashes


def _identity(path: str) -> tuple[str, int, int] | None:
    """(absolute path, size, modification time in ns), or None if the file cannot be seen
    (then it is read, and the read says what is wrong)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def _lookup(known: dict, identity: tuple[str, int, int] | None) -> str | None:
    entry = known.get(identity[0]) if identity else None
    if isinstance(entry, list) and len(entry) == 3 and entry[:2] == list(identity[1:]):
        return entry[2]
    return None


def read_index(index: Path) -> dict:
    """{absolute path: [size, mtime_ns, hash]}; empty when the file is missing or unusable."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def merge_index(index: Path, entries: dict) -> None:
    """Add `entries` to the index on disk now, and replace it in one step. The index is an
    optimisation: when it cannot be written (a read-only home, a full disk) nothing fails."""
    with _writing:
        files = read_index(index) | entries
        if len(files) > MAX_ENTRIES:  # uploads of a server's expired sessions, moved folders
            files = {p: e for p, e in files.items() if p in entries or os.path.exists(p)}
        text = json.dumps({"format": FORMAT, "files": files}, separators=(",", ":"))
        try:
            index.parent.mkdir(parents=True, exist_ok=True)
            _replace(index, text)
        except OSError:
            pass


def _replace(path: Path, text: str) -> None:
    """runs.atomic_write's temporary file and os.replace, here because `runs` imports this
    package (and torch, which loading a dataset does not need)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
