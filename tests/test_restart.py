"""Nothing lost when the server dies mid-training: the run folder stays resumable, the app
says so when it starts again, and the run goes on from its last finished epoch."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import download_run, free_port, start_training, zip_folder
from gradio_client import Client, handle_file
from test_settings import start_app_py, wait_for_config

from tlapp import runs
from tlapp.train import Job, resume_config

ROOT = Path(__file__).resolve().parent.parent


def start_app(home: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "GRADIO_SERVER_PORT": str(port),
        "TLAPP_HOME": str(home),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    app = start_app_py(env)
    wait_for_config(f"http://127.0.0.1:{port}/config", app)
    return app


def wait_for(found, app: subprocess.Popen, what: str, timeout: float = 180):
    """The first true value of `found()`, polled while the app runs (events happen on the
    app's own threads: the run folder, for one, is made after Train has answered)."""
    deadline = time.monotonic() + timeout
    while not (result := found()):
        if app.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} never appeared")
        time.sleep(0.02)
    return result


def test_a_killed_server_leaves_the_run_resumable_and_it_resumes(class_folder, tmp_path):
    home, port = tmp_path / "home", free_port()
    app = start_app(home, port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        archive = zip_folder(class_folder, tmp_path / "colours.zip")
        client.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
        start_training(client, epochs=100)  # far more than can run before the kill below
        (run_dir,) = wait_for(lambda: list(home.glob("sessions/*/runs/*")), app, "the run folder")
        checkpoint = run_dir / runs.CHECKPOINT / runs.TRAINER_STATE
        wait_for(checkpoint.exists, app, "the first checkpoint")
    finally:
        app.send_signal(signal.SIGKILL)  # no chance to save or clean up
        app.wait(30)

    record = json.loads((run_dir / runs.RECORD).read_text())
    assert record["status"] == "training", "the run ended before the server was killed"
    assert (run_dir / runs.WEIGHTS).exists()  # the best epoch so far, whole

    app = start_app(home, port)  # the app again, on the same folders
    try:
        record = json.loads((run_dir / runs.RECORD).read_text())
        assert record["status"] == "interrupted"
        assert f"tlapp train --resume {run_dir}" in record["message"]
        archive = download_run(f"http://127.0.0.1:{port}/", f'<a href="{download_path(run_dir)}">')
        assert f"{run_dir.name}/{runs.WEIGHTS}" in archive.namelist()
    finally:
        app.terminate()
        app.wait(30)

    done = [r["epoch"] for r in runs.read_metrics(run_dir)]
    last = max(done)
    state = Job(resume_config(run_dir, epochs=last + 1), resume=True).start().wait(300)
    assert state.status == "done", state.message
    epochs = [r["epoch"] for r in runs.read_metrics(run_dir)]
    assert epochs == list(range(epochs[0], last + 2))  # no epoch lost or repeated
    assert json.loads((run_dir / runs.RECORD).read_text())["status"] == "done"


def download_path(run_dir: Path) -> str:
    return f"/download/{run_dir.parent.parent.name}/{run_dir.name}.zip"


def test_a_run_cut_off_before_any_epoch_says_there_is_nothing_to_resume(tmp_path):
    run_dir = tmp_path / "sessions" / "s" / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / runs.RECORD).write_text(json.dumps({"status": "training"}))
    done = tmp_path / "sessions" / "s" / "runs" / "done"
    done.mkdir()
    (done / runs.RECORD).write_text(json.dumps({"status": "done"}))
    assert runs.mark_interrupted(tmp_path.glob(f"sessions/*/runs/*/{runs.RECORD}")) == [run_dir]
    record = json.loads((run_dir / runs.RECORD).read_text())
    assert record["status"] == "interrupted" and "nothing to continue" in record["message"]
    assert json.loads((done / runs.RECORD).read_text()) == {"status": "done"}
