"""Several visitors on one app: a queue for training, Stop isolation, files of their own,
and nothing served from outside the app's own folders."""

import time
from pathlib import Path

import httpx
import pytest
from conftest import poll_until, serve, start_training, zip_folder
from gradio_client import Client, handle_file

from tlapp.web import AppSettings
from tlapp.web.sessions import SessionRegistry


@pytest.fixture
def app(tmp_path):
    settings = AppSettings(home=tmp_path / "home", allow_local_paths=False, max_jobs=1)
    url, demo = serve(settings)
    yield url, settings
    demo.close()


def visitor(url, archive):
    client = Client(url, verbose=False)
    client.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
    return client


def test_second_visitor_queues_stop_is_isolated_files_are_separate(app, class_folder, tmp_path):
    url, settings = app
    archive = zip_folder(class_folder, tmp_path / "colours.zip")
    alice, bob = visitor(url, archive), visitor(url, archive)
    start_training(alice, epochs=60)
    poll_until(alice, "Training")
    start_training(bob, epochs=2)
    queued = poll_until(bob, "Queued")[0]
    assert "place 1 in the queue" in queued and "starts by itself" in queued

    bob.predict(api_name="/stop")  # Bob's Stop ends Bob's wait, never Alice's run
    poll_until(bob, "Stopped")
    assert alice.predict(api_name="/poll")[0].startswith("**Training**")

    start_training(bob, epochs=2)
    poll_until(bob, "Queued")
    alice.predict(api_name="/stop")
    assert "Stopped by the user" in poll_until(alice, "Stopped")[0]
    assert poll_until(bob, "Finished", timeout=180)[0]  # Bob's job started by itself

    sessions = sorted((settings.home / "sessions").iterdir())
    assert len(sessions) == 2
    runs_a, runs_b = (list((s / "runs").iterdir()) for s in sessions)
    assert len(runs_a) == 1 and len(runs_b) == 1 and runs_a[0] != runs_b[0]


def test_the_app_never_serves_files_outside_its_folders(app):
    url, settings = app
    secret = Path(__file__).resolve().parent.parent / "app.py"
    for path in ("/etc/passwd", str(secret), str(settings.home / ".." / "x")):
        response = httpx.get(f"{url}gradio_api/file={path}")
        assert response.status_code in (403, 404), path


def test_closing_the_page_finishes_the_epoch_and_old_folders_are_swept(tmp_path, class_folder):
    from tlapp.config import make_config
    from tlapp.data import load_dataset
    from tlapp.train import Job

    settings = AppSettings(home=tmp_path / "home", allow_local_paths=False, retention_hours=1)
    registry = SessionRegistry(settings)
    session = registry.open("hash-1")
    session.dataset = load_dataset(class_folder)
    session.job = Job(
        make_config(
            data=str(class_folder),
            model="test_resnet",
            weights="none",
            img_size=48,
            batch_size=8,
            epochs=50,
            runs_root=str(session.workdir / "runs"),
        ),
        session.dataset,
    ).start()
    while not session.job.snapshot().step_losses:
        time.sleep(0.02)
    registry.close("hash-1")
    state = session.job.wait(60)
    assert state.status == "stopped" and "page was closed" in state.message and state.has_model
    stale = settings.home / "sessions" / "old"
    stale.mkdir()
    import os

    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    registry.open("hash-2")
    assert not stale.exists() and session.workdir.exists()
    registry.discard(session)
    assert not session.workdir.exists()
