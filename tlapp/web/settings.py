"""The app's settings, read once from the environment when it starts.

settings = AppSettings.from_env(server_name="127.0.0.1")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data import Limits

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class AppSettings:
    home: Path  # per-session folders live under home/sessions
    allow_local_paths: bool  # read folders on this computer (never on a public server)
    limits: Limits = Limits()  # per upload: total bytes, file count, pixels per image
    max_jobs: int = 1  # jobs training at once; the others wait in a queue
    retention_hours: float = 24.0  # session folders (uploads, runs) older than this are removed

    @staticmethod
    def from_env(server_name: str = "127.0.0.1", share: bool = False) -> AppSettings:
        """Local paths only when the page is private: loopback, not shared, not on Spaces.
        TLAPP_LOCAL_FOLDERS=1/0 overrides; TLAPP_MAX_UPLOAD_MB, TLAPP_MAX_FILES,
        TLAPP_MAX_PIXELS, TLAPP_MAX_JOBS and TLAPP_RETENTION_HOURS set the limits."""
        env = os.environ.get
        private = server_name in LOOPBACK and not share and not env("SPACE_ID")
        override = env("TLAPP_LOCAL_FOLDERS", "").strip().lower()
        allow = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(
            override, private
        )
        default = Limits()
        limits = Limits(
            max_bytes=int(float(env("TLAPP_MAX_UPLOAD_MB", default.max_bytes / 2**20)) * 2**20),
            max_files=int(env("TLAPP_MAX_FILES", default.max_files)),
            max_pixels=int(env("TLAPP_MAX_PIXELS", default.max_pixels)),
        )
        return AppSettings(
            Path(env("TLAPP_HOME", "tlapp_data")).resolve(),
            allow,
            limits,
            int(env("TLAPP_MAX_JOBS", 1)),
            float(env("TLAPP_RETENTION_HOURS", 24)),
        )
