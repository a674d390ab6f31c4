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

import pandas as pd

from .. import runs
from ..data import Corrections, Dataset
from ..health import check_health
from ..predict import Predictor
from ..train import Job
from .settings import AppSettings


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
        weights = Path(run_dir) / runs.WEIGHTS
        key = (run_dir, weights.stat().st_mtime_ns)
        if key not in self.predictors:
            self.predictors = {key: Predictor(run_dir)}
        return self.predictors[key]

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
        if session and session.job:
            session.job.finish_epoch_and_stop()

    def discard(self, session: Session | None) -> None:
        """Gradio dropped this session's state: remove its files unless a job still runs."""
        if session and not session.busy:
            shutil.rmtree(session.workdir, ignore_errors=True)

    def sweep(self) -> None:
        root = self.settings.home / "sessions"
        if not root.is_dir():
            return
        with self.lock:
            busy = {s.workdir for s in self.by_hash.values() if s.busy}
        cutoff = time.time() - self.settings.retention_hours * 3600
        for folder in root.iterdir():
            if folder not in busy and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
