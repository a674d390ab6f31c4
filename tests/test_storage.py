"""One disk budget for every visitor: idle sessions swept oldest first, a clear word when full."""

import os

import pytest
from conftest import poll_until, serve, start_training, zip_folder
from gradio_client import Client, handle_file

from tlapp.data import DataError
from tlapp.web import AppSettings
from tlapp.web.storage import Storage, default_budget, folder_size

MB = 1 << 20


def session_folder(home, name, megabytes, age_hours):
    folder = home / "sessions" / name
    (folder / "runs" / "run").mkdir(parents=True)
    (folder / "runs" / "run" / "model.safetensors").write_bytes(b"x" * (megabytes * MB))
    stamp = 1_700_000_000 - age_hours * 3600
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (stamp, stamp))
    return folder


def test_within_budget_nothing_is_swept(tmp_path):
    a = session_folder(tmp_path, "a", 2, age_hours=5)
    assert (
        Storage(tmp_path, 10 * MB, tmp_path / "gradio").make_room(tmp_path / "new", set(), set())
        == 2 * MB
    )
    assert a.exists()


def test_closed_pages_go_first_then_the_oldest_open_never_busy_or_the_asker(tmp_path):
    old_open = session_folder(tmp_path, "old-open", 2, age_hours=9)
    new_closed = session_folder(tmp_path, "new-closed", 2, age_hours=1)
    busy = session_folder(tmp_path, "busy", 2, age_hours=20)
    asker = session_folder(tmp_path, "asker", 2, age_hours=30)
    storage = Storage(tmp_path, 6 * MB, tmp_path / "gradio")  # 8 MB held: one session must go
    storage.make_room(asker, open_folders={old_open, busy, asker}, busy_folders={busy})
    assert not new_closed.exists() and old_open.exists() and busy.exists() and asker.exists()
    storage.budget = 4 * MB  # now the open idle one goes too, still not busy or the asker
    storage.make_room(asker, open_folders={old_open, busy, asker}, busy_folders={busy})
    assert not old_open.exists() and busy.exists() and asker.exists()


def test_the_embedding_cache_goes_after_the_sessions(tmp_path):
    cache = tmp_path / "cache" / "key"
    cache.mkdir(parents=True)
    (cache / "embeddings.safetensors").write_bytes(b"x" * 3 * MB)
    idle = session_folder(tmp_path, "idle", 1, age_hours=2)
    Storage(tmp_path, 2 * MB, tmp_path / "gradio").make_room(tmp_path / "asker", set(), set())
    assert not idle.exists() and not cache.exists()


def test_full_of_sessions_in_use_says_so_and_removes_nothing(tmp_path):
    busy = session_folder(tmp_path, "busy", 3, age_hours=2)
    with pytest.raises(DataError, match="space for visitors is full .*TLAPP_DISK_BUDGET_GB"):
        Storage(tmp_path, 1 * MB, tmp_path / "gradio").make_room(tmp_path / "asker", {busy}, {busy})
    assert folder_size(busy) == 3 * MB


def test_the_default_budget_leaves_the_disk_room(tmp_path):
    assert default_budget(tmp_path / "home", 0.001) == int(0.001 * (1 << 30))
    assert default_budget(tmp_path / "home", 10**9) < 10**9 * (1 << 30)  # capped by free space


def test_a_visitor_over_the_budget_sweeps_an_idle_one_who_is_then_told(class_folder, tmp_path):
    """Through the page: B's upload clears A's idle session; A's Train then asks for the data
    again in a sentence, and B's run goes on. The budget holds one visitor's data and head-only
    run, and a second visitor's data, but not both visitors' runs."""
    from tlapp.models import saved_bytes

    data = folder_size(class_folder)
    model = saved_bytes("test_resnet", 3, "all")
    settings = AppSettings(
        home=tmp_path / "home",
        allow_local_paths=False,
        disk_budget=model + 2 * data,
        upload_temp=tmp_path / "gradio",
    )
    url, demo = serve(settings)
    try:
        archive = zip_folder(class_folder, tmp_path / "colours.zip")
        a = Client(url, verbose=False)
        a.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
        start_training(a, epochs=1, freeze=5)  # every stage of test_resnet: head only
        assert poll_until(a, "Finished", "Failed")[0].startswith("**Finished**")
        (a_folder,) = (settings.home / "sessions").iterdir()
        assert folder_size(a_folder) + data > settings.disk_budget

        b = Client(url, verbose=False)
        summary, *_ = b.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
        assert "36 images" in summary and not (a_folder / "runs").exists()
        with pytest.raises(Exception, match="ran short of space.*load your data again"):
            start_training(a, epochs=1, freeze=5)
        start_training(b, epochs=1, freeze=5)
        assert poll_until(b, "Finished", "Failed")[0].startswith("**Finished**")
    finally:
        demo.close()


def test_what_is_about_to_be_written_counts_and_gradios_uploads_too(tmp_path):
    home, uploads = tmp_path / "home", tmp_path / "gradio"
    idle = session_folder(home, "idle", 2, age_hours=3)
    uploads.mkdir()
    (uploads / "photos.zip").write_bytes(b"x" * MB)
    storage = Storage(home, 6 * MB, uploads)
    assert storage.used() == 3 * MB
    assert storage.make_room(home / "asker", set(), set(), incoming=3 * MB) == 3 * MB
    assert idle.exists()  # 3 + 3 fits
    assert storage.make_room(home / "asker", set(), set(), incoming=4 * MB) == MB
    assert not idle.exists()  # 3 + 4 did not: the idle session made room


def test_a_running_total_answers_until_near_the_budget_then_the_folders_are_walked(tmp_path):
    home, uploads = tmp_path / "home", tmp_path / "gradio"
    idle = session_folder(home, "idle", 2, age_hours=3)
    storage = Storage(home, 100 * MB, uploads)
    walks = []
    measure = storage.used
    storage.used = lambda: walks.append(1) or measure()
    assert storage.make_room(home / "asker", set(), set(), incoming=10 * MB) == 2 * MB
    for held in (12, 22, 32, 42, 52, 62, 72):  # each reserved, none written
        assert storage.make_room(home / "asker", set(), set(), incoming=10 * MB) == held * MB
    assert len(walks) == 1  # the first request walked the folders; the others took the total
    # 82 + 10 MB would pass 90% of the budget: the folders are walked, and hold 2 MB.
    assert storage.make_room(home / "asker", set(), set(), incoming=10 * MB) == 2 * MB
    assert len(walks) == 2 and idle.exists()


def test_the_running_total_is_checked_against_the_folders_every_so_often(tmp_path):
    """Files written without a reservation (the embedding cache, exports) are seen at the next
    walk, at most RECOUNT_EVERY requests later."""
    from tlapp.web.storage import RECOUNT_EVERY

    home = tmp_path / "home"
    storage = Storage(home, 100 * MB, tmp_path / "gradio")
    storage.make_room(home / "asker", set(), set())
    cache = home / "cache" / "key"
    cache.mkdir(parents=True)
    (cache / "embeddings.safetensors").write_bytes(b"x" * 5 * MB)
    held = [storage.make_room(home / "asker", set(), set()) for _ in range(RECOUNT_EVERY)]
    assert held[:-1] == [0] * (RECOUNT_EVERY - 1) and held[-1] == 5 * MB


def test_an_upload_that_cannot_fit_is_refused_before_anything_is_swept(tmp_path):
    home = tmp_path / "home"
    busy = session_folder(home, "busy", 2, age_hours=5)
    idle = session_folder(home, "idle", 1, age_hours=3)
    storage = Storage(home, 6 * MB, tmp_path / "gradio")
    with pytest.raises(
        DataError, match=r"^This needs 5\.0 MB .* 3\.0 MB left .*nothing was written"
    ):
        storage.make_room(home / "asker", {busy}, {busy}, incoming=5 * MB)
    assert idle.exists() and busy.exists()  # sweeping the idle one would not have made room


def test_an_upload_is_measured_unpacked_before_it_is_written(class_folder, tmp_path):
    from tlapp.web.uploads import upload_bytes

    archive = zip_folder(class_folder, tmp_path / "colours.zip")
    unpacked = folder_size(class_folder)
    assert upload_bytes(str(archive)) == unpacked  # from the zip's directory, not its size
    files = [str(p) for p in class_folder.rglob("*.png")]
    assert upload_bytes(files) == unpacked and upload_bytes(None) == 0

    settings = AppSettings(
        home=tmp_path / "home",
        allow_local_paths=False,
        disk_budget=unpacked // 2,
        upload_temp=tmp_path / "gradio",
    )
    url, demo = serve(settings)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match=r"This needs .* nothing was written"):
            client.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
        written = [p for p in (settings.home / "sessions").rglob("*") if p.is_file()]
        assert written == []
    finally:
        demo.close()


def test_a_run_is_refused_before_it_starts_when_its_model_would_not_fit(class_folder, tmp_path):
    from tlapp.models import saved_bytes

    head_only, fine_tune = saved_bytes("test_resnet", 3, "all"), saved_bytes("test_resnet", 3, 0)
    assert 0 < head_only < fine_tune  # the checkpoint and AdamW's moments come with training
    settings = AppSettings(
        home=tmp_path / "home",
        allow_local_paths=False,
        disk_budget=folder_size(class_folder) * 2 + head_only // 2,
        upload_temp=tmp_path / "gradio",
    )
    url, demo = serve(settings)
    try:
        client = Client(url, verbose=False)
        client.predict(
            handle_file(str(zip_folder(class_folder, tmp_path / "c.zip"))),
            0.2,
            0.15,
            api_name="/load_upload",
        )
        with pytest.raises(Exception, match=r"This needs .* nothing was written"):
            start_training(client, epochs=1)
        assert not list((settings.home / "sessions").rglob("runs/*"))
    finally:
        demo.close()
