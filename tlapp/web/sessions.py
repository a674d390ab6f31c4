"""Visitors: each browser session gets a `Session` with a folder of its own; the registry
decides what happens when a page closes and sweeps folders nobody uses any more.

    registry = SessionRegistry(settings)
    session = registry.open(request.session_hash)   # a fresh folder under home/sessions
    session.use(dataset)                             # health checked, corrections applied
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .. import runs
from ..data import Corrections, Dataset
from ..health import check_health
from .settings import AppSettings
from .storage import Storage

if TYPE_CHECKING:
    from ..predict import Predictor
    from ..train import Job


@dataclass
class Session:
    """One visitor's data, job and model. Held in gr.State, so never shared between visitors."""

    workdir: Path
    dataset: Dataset | None = None  # as loaded, with the corrections applied
    original: Dataset | None = None  # as loaded
    findings: pd.DataFrame | None = None  # data health
    job: Job | None = None
    predictors: dict = field(default_factory=dict)

    def use(self, dataset: Dataset, findings: pd.DataFrame | None = None) -> None:
        """Work on `dataset` from now on; `findings`: its health check, if already made."""
        self.original = dataset
        self.findings = check_health(dataset) if findings is None else findings
        self.dataset = dataset.corrected(self.corrections())

    def data_folder(self, name: str) -> Path:
        """A new folder for one upload, so a later upload never replaces files a job reads."""
        return self.workdir / "data" / f"{name}-{uuid.uuid4().hex[:8]}"

    def corrections(self) -> Corrections:
        """The corrections of the current data, kept in this session's folder."""
        key = hashlib.blake2b(self.original.root.encode(), digest_size=8).hexdigest()
        return Corrections.load(self.workdir / "corrections" / f"{key}.json")

    @staticmethod
    def new(settings: AppSettings) -> Session:
        workdir = settings.home / "sessions" / uuid.uuid4().hex
        workdir.mkdir(parents=True, exist_ok=True)
        return Session(workdir)

    def predictor(self, run_dir: str) -> Predictor:
        """The run's best model, reloaded whenever a better epoch has been saved."""
        # Imported here: the page is served before torch loads (a background thread loads it).
        from ..predict import Predictor

        weights = Path(run_dir) / runs.WEIGHTS
        key = (run_dir, weights.stat().st_mtime_ns)
        if key not in self.predictors:
            self.predictors = {key: Predictor(run_dir)}
        return self.predictors[key]

    def after_sweep(self) -> None:
        """If this idle session's folder was swept to make room: an empty folder again, and
        the data that lived in it forgotten (the page then asks for it again)."""
        if self.workdir.exists():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.original is not None and Path(self.original.root).is_relative_to(self.workdir):
            self.dataset = self.original = self.findings = None
        self.predictors = {}

    @property
    def busy(self) -> bool:
        return bool(self.job and self.job.running)


class SessionRegistry:
    """The sessions of one app, by Gradio session hash, for what happens when a page closes.

    Policy: closing the page lets a training job finish its current epoch, save and end; the
    session's folder is removed when Gradio drops its state (an hour after the page closed),
    and any session folder untouched for `retention_hours` is swept away."""

    def __init__(self, settings: AppSettings):
        self.settings, self.by_hash, self.lock = settings, {}, threading.Lock()
        self.storage = Storage(settings.home, settings.disk_budget, settings.upload_temp)
        self.writers: dict[Path, Session] = {}  # every session that asked to write, by folder
        self.closed: set[Path] = set()  # ... and those whose page has closed since
        self._sweeping = threading.Lock()  # one sweep at a time: two would count folders twice
        # Nothing trains yet: a run that says it does was cut off when the app last stopped.
        runs.mark_interrupted((settings.home / "sessions").glob(f"*/runs/*/{runs.RECORD}"))

    def make_room(self, session: Session, incoming: int = 0) -> None:
        """Before `session` writes `incoming` bytes (an upload, a run): within the disk budget,
        by sweeping idle sessions if need be, or a DataError that says the machine is full."""
        session.after_sweep()
        with self.lock:
            self.writers[session.workdir] = session  # pages that never announced themselves too
        open_folders, busy = self._live()
        with self._sweeping:
            self.storage.make_room(session.workdir, open_folders, busy, incoming)

    def _live(self) -> tuple[set[Path], set[Path]]:
        """Folders of pages still open, and of sessions whose job runs (open or not)."""
        with self.lock:
            sessions = [*self.by_hash.values(), *self.writers.values()]
            open_folders = {s.workdir for s in sessions} - self.closed
            return open_folders, {s.workdir for s in sessions if s.busy}

    def open(self, session_hash: str | None) -> Session:
        self.sweep()
        session = Session.new(self.settings)
        if session_hash:
            with self.lock:
                self.by_hash[session_hash] = session
        return session

    def close(self, session_hash: str | None) -> None:
        with self.lock:
            session = self.by_hash.pop(session_hash, None)
            if session:
                self.closed.add(session.workdir)
        if session and session.job:
            session.job.finish_epoch_and_stop()

    def discard(self, session: Session | None) -> None:
        """Gradio dropped this session's state: remove its files unless a job still runs."""
        if session and not session.busy:
            with self.lock:
                self.writers.pop(session.workdir, None)
                self.closed.discard(session.workdir)
            shutil.rmtree(session.workdir, ignore_errors=True)

    def sweep(self) -> None:
        root = self.settings.home / "sessions"
        if not root.is_dir():
            return
        _, busy = self._live()
        cutoff = time.time() - self.settings.retention_hours * 3600
        for folder in root.iterdir():
            if folder not in busy and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
