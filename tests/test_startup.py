"""The page is built and served without torch, timm or scikit-learn (seconds to import on a
small machine); the engine loads in the background once the page answers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tlapp import models
from tlapp.catalogue import CATALOG, PARAMS, STAGES

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "timm", "torchvision", "sklearn", "onnx", "onnxruntime")


def loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running `code`."""
    script = (
        f"import json, sys\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_page_is_built_without_the_engine(tmp_path):
    home = tmp_path / "home"
    code = (
        "from pathlib import Path\n"
        "from tlapp.web import AppSettings, build_ui, launch_kwargs\n"
        f"settings = AppSettings(home=Path({str(home)!r}), allow_local_paths=False)\n"
        "build_ui(settings)\n"
        "launch_kwargs(settings)"
    )
    assert loaded_after(code) == []


def test_the_warm_up_loads_what_the_handlers_import():
    code = "import tlapp.web\ntlapp.web.warm_up()"
    assert {"torch", "timm"} <= set(loaded_after(code))


@pytest.mark.parametrize("name", list(CATALOG))
def test_the_catalogue_s_sizes_are_timm_s(name):
    assert PARAMS[name] == models.param_count(name)
    assert STAGES[name] == len(models.preview_freeze(name, 0).stages)


def test_the_training_package_loads_its_job_on_first_use():
    import tlapp.train
    from tlapp.train import Job, Trainer, resume_config
    from tlapp.train.job import Job as job

    assert Job is job and callable(resume_config) and Trainer.__module__ == "tlapp.train.loop"
    with pytest.raises(AttributeError, match="Nothing"):
        tlapp.train.Nothing  # noqa: B018
