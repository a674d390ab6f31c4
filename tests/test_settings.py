"""The app's settings come from Gradio's own environment variables; a public page never reads
the server's folders."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

from tlapp.web import AppSettings, launch_kwargs

ROOT = Path(__file__).resolve().parent.parent
NAMES = (
    "GRADIO_SERVER_NAME",
    "GRADIO_SERVER_PORT",
    "GRADIO_ROOT_PATH",
    "GRADIO_SHARE",
    "TLAPP_HOST",
    "TLAPP_PORT",
    "TLAPP_LOCAL_FOLDERS",
    "SPACE_ID",
    "SPACES_ZERO_GPU",
    "TLAPP_MAX_JOBS",
)


@pytest.fixture
def env(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_gradio_variables_name_the_address_port_root_path_and_share(env):
    env.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    env.setenv("GRADIO_SERVER_PORT", "7999")
    env.setenv("GRADIO_ROOT_PATH", "/tlapp/")
    kwargs = launch_kwargs(AppSettings.from_env())
    assert kwargs["server_name"] == "0.0.0.0" and kwargs["server_port"] == 7999
    assert kwargs["root_path"] == "/tlapp" and kwargs["share"] is False


def test_the_old_names_still_work_and_gradio_s_win(env):
    env.setenv("TLAPP_HOST", "0.0.0.0")
    env.setenv("TLAPP_PORT", "7001")
    settings = AppSettings.from_env()
    assert (settings.host, settings.port) == ("0.0.0.0", 7001)
    env.setenv("GRADIO_SERVER_PORT", "7002")
    assert AppSettings.from_env().port == 7002


@pytest.mark.parametrize(
    "variables, allowed",
    [
        ({}, True),  # loopback, private
        ({"GRADIO_SERVER_NAME": "0.0.0.0"}, False),
        ({"GRADIO_SERVER_NAME": "0.0.0.0", "TLAPP_LOCAL_FOLDERS": "1"}, True),  # a lab's network
        ({"TLAPP_LOCAL_FOLDERS": "0"}, False),
        ({"GRADIO_SHARE": "True"}, False),  # a public gradio.live link
        ({"GRADIO_SHARE": "1", "TLAPP_LOCAL_FOLDERS": "1"}, False),  # never, whatever it says
        ({"SPACE_ID": "someone/tlapp", "TLAPP_LOCAL_FOLDERS": "yes"}, False),
    ],
)
def test_a_public_page_never_reads_the_server_s_folders(env, variables, allowed):
    for name, value in variables.items():
        env.setenv(name, value)
    settings = AppSettings.from_env()
    assert settings.allow_local_paths is allowed
    assert launch_kwargs(settings)["share"] is (variables.get("GRADIO_SHARE") in ("True", "1"))


def test_app_py_serves_on_the_port_and_root_path_it_is_given(tmp_path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in NAMES},
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ROOT_PATH": "/tlapp",
        "TLAPP_HOME": str(tmp_path / "home"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    app = start_app_py(env)
    try:
        config = wait_for_config(f"http://127.0.0.1:{port}/config", app)
        assert config["root"].endswith("/tlapp")
        assert any(c.get("props", {}).get("elem_id") == "train-btn" for c in config["components"])
        # the app's own download route is served beside Gradio's (it answers, with its words)
        missing = f"http://127.0.0.1:{port}/download/{'0' * 32}/no-run.zip"
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(missing, timeout=30)
        assert answer.value.code == 404 and b"No such run" in answer.value.read()
    finally:
        app.terminate()
        app.wait(30)


def start_app_py(env: dict) -> subprocess.Popen:
    """`python app.py` from the repository, with its output kept for a failure's message."""
    return subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_config(url: str, app: subprocess.Popen) -> dict:
    """The page's config once the server answers; fails if the process ends first."""
    deadline = time.monotonic() + 180  # a generous bound on start-up, not a measurement
    while time.monotonic() < deadline:
        if app.poll() is not None:
            pytest.fail(f"app.py ended with {app.returncode}:\n{app.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    pytest.fail("app.py did not answer within 180 s")


def test_a_zero_gpu_space_trains_on_the_cpu_and_says_why(env, class_folder, tmp_path):
    from dataclasses import replace

    from tlapp.data import load_dataset
    from tlapp.web.page import machine_notice
    from tlapp.web.page.train import config_from_page
    from tlapp.web.sessions import Session

    env.setenv("SPACES_ZERO_GPU", "true")
    env.setenv("TLAPP_MAX_JOBS", "3")
    settings = replace(AppSettings.from_env(), home=tmp_path / "home")
    assert settings.zero_gpu and settings.max_jobs == 3
    notice = machine_notice(settings)
    assert "3 runs at a time" in notice and "ZeroGPU" in notice and "on the CPU" in notice
    session = Session.new(settings)
    session.use(load_dataset(class_folder))
    values = ("resnet18", "", "none", None, "", 0, 1, 48, 4, 0.001, False, "off", "0")
    assert config_from_page(settings, session, *values).device == "cpu"
    plain = replace(settings, zero_gpu=False)
    assert config_from_page(plain, session, *values).device == "auto"
    assert "ZeroGPU" not in machine_notice(plain)
