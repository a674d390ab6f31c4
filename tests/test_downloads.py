"""Runs download as zips streamed on request: only finished runs of a session folder, by name."""

import io
import json
import zipfile

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tlapp import runs
from tlapp.web import AppSettings
from tlapp.web.downloads import download_routes, download_url, finished_run

SESSION = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def settings(tmp_path):
    return AppSettings(home=tmp_path / "home", allow_local_paths=False, root_path="/tlapp")


def make_run(settings, name="20261126-120000-resnet18", status="done"):
    run_dir = settings.home / "sessions" / SESSION / "runs" / name
    (run_dir / runs.CHECKPOINT).mkdir(parents=True)
    (run_dir / runs.RECORD).write_text(json.dumps({"status": status, "classes": ["a", "b"]}))
    (run_dir / runs.WEIGHTS).write_bytes(bytes(range(256)) * 4000)
    (run_dir / runs.CHECKPOINT / runs.LAST_WEIGHTS).write_bytes(b"resume state")
    return run_dir


def client(settings):
    return TestClient(Starlette(routes=download_routes(settings)))


def test_a_finished_run_streams_as_the_zip_of_its_folder(settings):
    run_dir = make_run(settings)
    url = download_url(settings, run_dir)
    assert url == f"/tlapp/download/{SESSION}/{run_dir.name}.zip"
    response = client(settings).get(url.removeprefix("/tlapp"))  # the proxy strips the root
    assert response.status_code == 200
    assert run_dir.name in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == [
        f"{run_dir.name}/{runs.WEIGHTS}",
        f"{run_dir.name}/{runs.RECORD}",
    ]
    assert archive.read(f"{run_dir.name}/{runs.WEIGHTS}") == (run_dir / runs.WEIGHTS).read_bytes()
    assert not list(settings.home.rglob("*.zip"))  # nothing written to disk


@pytest.mark.parametrize(
    "session, run",
    [
        (SESSION, "no-such-run"),  # not there
        ("not-a-session", "20261126-120000-resnet18"),  # not a session folder's name
        (SESSION, "..%2F..%2Fetc"),  # out of the runs folder
        (SESSION, ".hidden"),
    ],
)
def test_anything_but_a_run_of_a_session_is_not_found(settings, session, run):
    make_run(settings)
    response = client(settings).get(f"/download/{session}/{run}.zip")
    assert response.status_code == 404 and "zip" not in response.headers["content-type"]


def test_a_run_still_training_is_not_offered(settings):
    run_dir = make_run(settings, status="training")
    found, problem = finished_run(settings, SESSION, run_dir.name)
    assert found is None and "not finished" in problem
    assert client(settings).get(f"/download/{SESSION}/{run_dir.name}.zip").status_code == 404
