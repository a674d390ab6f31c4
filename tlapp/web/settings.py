"""The app's settings, read once from the environment when it starts.

    settings = AppSettings.from_env()   # GRADIO_SERVER_NAME/PORT/ROOT_PATH, GRADIO_SHARE, TLAPP_*

Gradio's own variables name the address, port, root path and share link (the `TLAPP_HOST` and
`TLAPP_PORT` of earlier versions are read as aliases). Whether visitors may read folders on this
computer follows from them: only a private page (loopback, no share link, not on Spaces) may.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data import Limits

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class AppSettings:
    home: Path  # per-session folders live under home/sessions
    allow_local_paths: bool  # read folders on this computer (never on a public server)
    limits: Limits = Limits()  # per upload: total bytes, file count, pixels per image
    max_jobs: int = 1  # jobs training at once; the others wait in a queue
    retention_hours: float = 24.0  # session folders (uploads, runs) older than this are removed
    host: str = "127.0.0.1"  # the address served on
    port: int = 7860
    root_path: str = ""  # the page's path behind a proxy, e.g. /tlapp
    share: bool = False  # a public gradio.live link
    zero_gpu: bool = (
        False  # a ZeroGPU Space: a GPU only inside one request, so training uses the CPU
    )
    # Bytes for uploads, runs and caches under home, all visitors; the storage caps it by the
    # free disk when it is first needed (web/storage.py), not while the app starts.
    disk_budget: int = 20 << 30
    # Where Gradio writes what browsers upload, counted in the budget; None: GRADIO_TEMP_DIR,
    # else Gradio's default.
    upload_temp: Path | None = None

    @staticmethod
    def from_env() -> AppSettings:
        """Local paths only when the page is private: loopback, not shared, not on Spaces.
        TLAPP_LOCAL_FOLDERS=1/0 overrides, except on a public page; TLAPP_MAX_UPLOAD_MB, TLAPP_MAX_FILES,
        TLAPP_MAX_PIXELS, TLAPP_MAX_JOBS, TLAPP_RETENTION_HOURS and TLAPP_DISK_BUDGET_GB set the
        limits."""
        env = os.environ.get
        on_spaces = bool(env("SPACE_ID"))
        host = env("GRADIO_SERVER_NAME") or env("TLAPP_HOST") or ("0.0.0.0" if on_spaces else "")
        host = host or "127.0.0.1"
        port = int(env("GRADIO_SERVER_PORT") or env("TLAPP_PORT") or 7860)
        share = env("GRADIO_SHARE", "").strip().lower() in TRUE
        override = env("TLAPP_LOCAL_FOLDERS", "").strip().lower()
        if share or on_spaces:  # a public page never reads the server's folders
            allow = False
        elif override in TRUE | FALSE:  # e.g. a server on a lab's own network
            allow = override in TRUE
        else:
            allow = host in LOOPBACK
        default = Limits()
        limits = Limits(
            max_bytes=int(float(env("TLAPP_MAX_UPLOAD_MB", default.max_bytes / 2**20)) * 2**20),
            max_files=int(env("TLAPP_MAX_FILES", default.max_files)),
            max_pixels=int(env("TLAPP_MAX_PIXELS", default.max_pixels)),
        )
        home = Path(env("TLAPP_HOME", "tlapp_data")).resolve()
        return AppSettings(
            home,
            allow,
            limits,
            int(env("TLAPP_MAX_JOBS", 1)),
            float(env("TLAPP_RETENTION_HOURS", 24)),
            host,
            port,
            env("GRADIO_ROOT_PATH", "").rstrip("/"),
            share,
            env("SPACES_ZERO_GPU", "").strip().lower() in TRUE | {"t"},
            int(float(env("TLAPP_DISK_BUDGET_GB", 20)) * (1 << 30)),
        )
