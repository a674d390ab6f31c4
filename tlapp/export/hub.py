"""A run on the Hugging Face Hub: the upload, with its model card.

    url = push_to_hub("runs/mine", "me/flowers")          # private unless private=False

The repository holds what a timm user needs and what the card cites: timm's config.json, the
weights, the app's record (run.json, with local paths cut to their last part), metrics.csv,
per_class.csv, confusion_matrix.csv with a picture of it, and model.onnx when the run has one.
The resume checkpoint and val_predictions.csv (which lists the paths of the user's images) stay
home. The token comes from the caller, else HF_TOKEN or huggingface_hub's stored login; it is
only handed to huggingface_hub, never written anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from .. import runs
from .card import MATRIX_IMAGE, model_card
from .onnx import ONNX_FILE
from .picture import confusion_png
from .public import public_record

CARD = "README.md"


# The run folder's files that go to the hub, in this order; the card and the picture are added.
HUB_FILES = (
    runs.CONFIG,
    runs.WEIGHTS,
    runs.RECORD,
    runs.METRICS,
    runs.PER_CLASS,
    runs.CONFUSION,
    ONNX_FILE,
)


# ----------------------------------------------------------------------------- the upload
def hub_files(run_dir: str | os.PathLike) -> list[Path]:
    """The run folder's files that belong on the hub (those of HUB_FILES it has)."""
    run_dir = Path(run_dir)
    return [run_dir / name for name in HUB_FILES if (run_dir / name).is_file()]


def resolve_token(token: str | None = None, stored: bool = True) -> str:
    """The token given, else (when `stored`) HF_TOKEN or huggingface_hub's stored login."""
    token = (token or "").strip()
    if not token and stored:
        import huggingface_hub

        token = (os.environ.get("HF_TOKEN") or "").strip() or (huggingface_hub.get_token() or "")
    if not token:
        raise ValueError(
            "No Hugging Face token: give one with write access "
            "(https://huggingface.co/settings/tokens)"
            + (", set HF_TOKEN, or log in with `hf auth login`." if stored else ".")
        )
    return token


def push_to_hub(
    run_dir: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = True,
    stored_token: bool = True,
) -> str:
    """Create (or reuse) the model repository `repo_id` and upload the run with its card;
    returns the repository's URL. `stored_token=False` refuses HF_TOKEN and the stored login
    (a public page must not publish with its server's account). Raises ValueError, one
    sentence, when there is no model, no token, or the hub cannot be reached or says no."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import validate_repo_id

    run_dir = Path(run_dir)
    runs.read_config(run_dir)  # a run folder at all
    if not (run_dir / runs.WEIGHTS).is_file():
        raise ValueError(
            f"The run in '{run_dir}' has no saved model yet, so there is nothing to publish."
        )
    repo_id = (repo_id or "").strip()
    if not repo_id:
        raise ValueError("Name the Hub repository to publish to: name or user/name.")
    try:
        validate_repo_id(repo_id)
    except ValueError:
        raise ValueError(
            f"'{repo_id}' is not a Hub repository name: write it as name or user/name "
            "(letters, digits, '-', '_' and '.')."
        ) from None
    token = resolve_token(token, stored_token)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        repo_id = getattr(url, "repo_id", None) or repo_id  # with the user's name when omitted
        with tempfile.TemporaryDirectory(prefix="tlapp-hub-") as folder:
            folder = Path(folder)
            _fill(folder, run_dir, repo_id)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                commit_message=f"Upload {run_dir.name} (tlapp)",
                delete_patterns=[n for n in HUB_FILES if not (folder / n).exists()] or None,
            )
    except Exception as err:
        problem = _hub_problem(err)
        if problem is None:
            raise
        raise ValueError(problem) from None
    return str(url) if str(url).startswith("http") else f"https://huggingface.co/{repo_id}"


def _fill(folder: Path, run_dir: Path, repo_id: str) -> None:
    """The upload folder: the card, the picture, the run's hub files (run.json made public)."""
    for path in hub_files(run_dir):
        if path.name == runs.RECORD:
            text = json.dumps(public_record(run_dir), indent=2, ensure_ascii=False, default=str)
            (folder / path.name).write_text(text + "\n", encoding="utf-8")
        else:
            shutil.copy2(path, folder / path.name)
    if (run_dir / runs.CONFUSION).is_file():
        confusion_png(run_dir, folder / MATRIX_IMAGE)
    (folder / CARD).write_text(model_card(run_dir, repo_id), encoding="utf-8")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The connection failures (no route, name lookup, proxy, timeout) of the HTTP library that
    huggingface_hub sends with: the base class of its transport errors, found through the HTTP
    error huggingface_hub re-exports (httpx in 1.x, its successor later)."""
    from huggingface_hub import errors

    base = getattr(errors, "HTTPError", None)
    library = sys.modules.get(base.__module__.split(".")[0]) if base else None
    if library is None or not hasattr(library, "TransportError"):
        import httpx as library
    return (library.TransportError, ConnectionError, TimeoutError, socket.gaierror)


def _hub_problem(err: BaseException) -> str | None:
    """The sentence for a failure of the hub or of the connection to it; None for the rest."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return "The Hugging Face Hub is switched off here (HF_HUB_OFFLINE is set): unset it to publish."
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            return (
                "The Hugging Face Hub refused the token: check that it is valid, has write "
                "access, and may write to that user or organisation."
            )
        detail = getattr(err, "server_message", None) or str(err).splitlines()[0]
        return f"The Hugging Face Hub refused the upload (HTTP {status or '?'}: {detail})."
    if isinstance(err, _transport_errors()):
        return (
            "The Hugging Face Hub could not be reached: check the internet connection "
            "(and any proxy) and try again."
        )
    return None
