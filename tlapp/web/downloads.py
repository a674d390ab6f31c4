"""Runs downloaded as zips made while they are sent: a download writes nothing to disk.

    launch(app_kwargs={"routes": download_routes(settings)})     # GET /download/<session>/<run>.zip
    html = download_link(settings, run_dir, "Download the model and results")

A finished run's folder is zipped on the fly (`archive.stream_zip`), so the disk holds each model
once, not again as a zip and a third time in Gradio's cache. The address names the visitor's
session folder, a random 128-bit name, the way Gradio's own file addresses name a file: only the
page that made the run is given it. A run still training is not offered, so a downloaded run is
always the one the page shows as finished.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import runs
from ..archive import stream_zip
from .settings import AppSettings

SESSION_NAME = re.compile(r"[0-9a-f]{32}")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def download_routes(settings: AppSettings) -> list[Route]:
    """The app's one route of its own, added beside Gradio's when the page is served."""

    async def download(request) -> Response:
        session, run = request.path_params["session"], request.path_params["run"]
        run_dir, problem = finished_run(settings, session, run.removesuffix(".zip"))
        if problem:
            return PlainTextResponse(problem, status_code=404)
        headers = {"Content-Disposition": f'attachment; filename="{run_dir.name}.zip"'}
        return StreamingResponse(stream_zip(run_dir), media_type="application/zip", headers=headers)

    return [Route("/download/{session}/{run}", download, methods=["GET"])]


def finished_run(settings: AppSettings, session: str, run: str) -> tuple[Path | None, str]:
    """The run folder a download address names, or why it cannot be downloaded."""
    if not (SESSION_NAME.fullmatch(session) and RUN_NAME.fullmatch(run)) or ".." in run:
        return None, "No such run."
    run_dir = settings.home / "sessions" / session / "runs" / run
    try:
        record = json.loads((run_dir / runs.RECORD).read_text())
    except (OSError, ValueError):
        return None, "No such run: it may have been cleared away with its session."
    if record.get("status") == "training" or not (run_dir / runs.WEIGHTS).is_file():
        return None, "This run has not finished yet: download it when the page says it ended."
    return run_dir, ""


def download_url(settings: AppSettings, run_dir: str | Path) -> str:
    """The address of a run of a visitor's session folder, under the page's root path."""
    run_dir = Path(run_dir)
    session = run_dir.parent.parent.name
    return f"{settings.root_path}/download/{session}/{run_dir.name}.zip"


def download_link(settings: AppSettings, run_dir: str | Path, label: str) -> str:
    """A button-like link that downloads the run (the browser names the file from the route)."""
    url = html.escape(download_url(settings, run_dir), quote=True)
    name = html.escape(f"{Path(run_dir).name}.zip")
    return f'<a class="tl-download" href="{url}" download>{html.escape(label)} ({name})</a>'
