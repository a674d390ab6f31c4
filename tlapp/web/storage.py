"""One disk budget for everything visitors leave on this machine: uploads, runs and the
embedding cache, all under the app's home folder.

    storage = Storage(settings.home, settings.disk_budget)   # bytes wanted; capped by the disk
    storage.make_room(keep=session.workdir, open_folders=..., busy_folders=..., incoming=bytes)

Checked before an upload is unpacked and before a run starts, counting what is about to be
written (`incoming`: the upload's unpacked size, or a run's estimated files) and Gradio's own
temporary folder, where the browser's uploads land first. Over budget, the oldest idle
sessions are swept first (pages already closed before pages still open, never a session that is
training, never the visitor asking), then the embedding cache (it only saves time). If that is
not enough, the visitor is told in a sentence and nothing is written: an upload or a run never
starts on a disk that cannot hold it, so no file is left half written.

The folders are not walked at every request: a running total (what the last walk found plus
what was reserved since) answers while it stays clear of the budget by a margin that covers
what is written without a reservation (the embedding cache, exports). Near the budget, or after
`RECOUNT_EVERY` reservations, the folders are walked again; deletions only make the total an
overestimate, which brings the next walk sooner. Callers make room one at a time (the session
registry holds a lock around it).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

from ..data import DataError

GB = 1 << 30
MARGIN = 0.1  # of the budget: the running total answers alone only below 90% of it
RECOUNT_EVERY = 20  # reservations between walks at most, so that unreserved writes are seen


def gradio_temp() -> Path:
    """Where Gradio keeps what browsers upload (GRADIO_TEMP_DIR, else its default)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


class Storage:
    def __init__(self, home: Path, wanted: int, uploads: Path | None = None):
        self.home, self.wanted = Path(home), wanted
        self.uploads = uploads or gradio_temp()  # counted, never swept: Gradio's to clear
        self.total: int | None = None  # bytes held at the last walk, plus those reserved since
        self.reservations = 0  # since the last walk

    @functools.cached_property
    def budget(self) -> int:
        """`wanted`, capped by the disk (`default_budget`): counted at the first upload or run,
        so that starting the app never walks the folders of earlier sessions."""
        return default_budget(self.home, self.wanted / GB)

    def used(self) -> int:
        """Bytes in files under the home folder (sessions and cache) and Gradio's uploads."""
        return folder_size(self.home) + folder_size(self.uploads)

    def make_room(
        self, keep: Path, open_folders: set[Path], busy_folders: set[Path], incoming: int = 0
    ) -> int:
        """Sweep until what is held plus `incoming` (bytes about to be written) fits the budget,
        and reserve `incoming`; returns the bytes held before it (as far as the running total
        knows). Raises DataError, with what to do, when only protected folders are left: then
        nothing is swept in vain and nothing is written."""
        if self._clear_of_budget(incoming):
            held = self.total
        else:
            held = self._sweep(keep, open_folders, busy_folders, incoming)
            self.reservations = 0
        self.total, self.reservations = held + incoming, self.reservations + 1
        return held

    def _clear_of_budget(self, incoming: int) -> bool:
        """Whether the running total alone can say that `incoming` fits."""
        return (
            self.total is not None
            and self.reservations < RECOUNT_EVERY
            and self.total + incoming <= self.budget * (1 - MARGIN)
        )

    def _sweep(
        self, keep: Path, open_folders: set[Path], busy_folders: set[Path], incoming: int
    ) -> int:
        """The folders walked, and idle ones swept until `incoming` fits; the bytes held after."""
        used = self.used()
        if used + incoming <= self.budget:
            return used
        sweepable = [(f, folder_size(f)) for f in self._sweepable(keep, open_folders, busy_folders)]
        if used - sum(size for _, size in sweepable) + incoming > self.budget:
            raise DataError(self._full(used, incoming))  # sweeping all would not be enough
        for folder, size in sweepable:
            if used + incoming <= self.budget:
                break
            used -= size
            shutil.rmtree(folder, ignore_errors=True)
        return used

    def _full(self, used: int, incoming: int) -> str:
        advice = (
            "Download the runs you want to keep and close pages you no longer need, or ask "
            "whoever runs the app to raise TLAPP_DISK_BUDGET_GB."
        )
        if incoming and incoming > self.budget - used:
            left = max(self.budget - used, 0)
            return (
                f"This needs {_size(incoming)} and the machine's space for visitors has "
                f"{_size(left)} left ({_size(used)} of {_size(self.budget)} in use, every "
                f"session still in use), so nothing was written. {advice}"
            )
        return (
            f"This machine's space for visitors is full ({used / GB:.1f} GB of "
            f"{self.budget / GB:.1f} GB, every session still in use). {advice}"
        )

    def _sweepable(self, keep: Path, open_folders: set[Path], busy_folders: set[Path]):
        """Idle session folders, closed pages first, oldest first; then the cache's parts."""
        root = self.home / "sessions"
        sessions = [f for f in _children(root) if f != keep and f not in busy_folders]
        sessions.sort(key=lambda f: (f in open_folders, last_change(f)))
        yield from sessions
        yield from sorted(_children(self.home / "cache"), key=last_change)


def default_budget(home: Path, wanted_gb: float | None) -> int:
    """TLAPP_DISK_BUDGET_GB, else 20 GB; never more than the home folder holds now plus
    80% of the disk's free space, so that the disk itself does not fill first."""
    wanted = int((wanted_gb if wanted_gb is not None else 20) * GB)
    probe = Path(home)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return wanted
    held = folder_size(Path(home)) if Path(home).exists() else 0
    return min(wanted, held + int(0.8 * free))


def folder_size(folder: Path) -> int:
    total = 0
    for entry in _scan(folder):
        try:
            total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # removed while counting
    return total


def last_change(folder: Path) -> float:
    """The newest modification time of a folder, its entries and theirs (a run's files)."""
    times = [_mtime(folder)]
    for child in _children(folder):
        times.append(_mtime(child))
        times += [_mtime(grandchild) for grandchild in _children(child)]
    return max(times)


def _scan(folder: Path):
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _scan(Path(entry.path))
        else:
            yield entry


def _children(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(n: int) -> str:
    return f"{n / GB:.1f} GB" if n >= GB // 10 else f"{n / (1 << 20):.1f} MB"
