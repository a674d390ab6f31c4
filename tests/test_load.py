"""A few visitors at once, as bench/load.py runs thirty: every one finishes and sees only its
own classes, runs and files."""

import importlib.util
from pathlib import Path

from conftest import serve

from tlapp.web import AppSettings

LOAD = Path(__file__).resolve().parent.parent / "bench" / "load.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("tlapp_bench_load", LOAD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_visitors_at_once_each_finish_and_see_only_their_own(tmp_path):
    """Two visitors on the sample and two with uploads of their own, all at once."""
    bench = load_bench()
    settings = AppSettings(home=tmp_path / "home", allow_local_paths=False, max_jobs=1)
    url, demo = serve(settings)
    work = tmp_path / "visitors"
    work.mkdir()
    try:
        from concurrent.futures import ThreadPoolExecutor

        data = ["sample", "upload", "sample", "upload"]
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(bench.visit, url, i, work, kind, "test_resnet", 600)
                for i, kind in enumerate(data)
            ]
            results = [f.result() for f in futures]
    finally:
        demo.close()
    assert [r["status"] for r in results] == ["Finished"] * 4
    assert bench.isolated(results) == 4
    sessions = list((settings.home / "sessions").iterdir())
    assert len(sessions) == 4
    for folder in sessions:  # one run each, in its own session folder, and no zip on disk
        assert len(list((folder / "runs").iterdir())) == 1
        assert not list(folder.rglob("*.zip"))
