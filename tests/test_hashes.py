"""The file-hash index: unchanged files are not read again, changed ones are, and a broken or
shared index never gives a wrong answer."""

import hashlib
import json
import os
import threading

import pytest

from tlapp.data import hashes
from tlapp.data.hashes import INDEX_FILE, file_hashes

HOUR_NS = 3600 * 10**9


def write(path, data: bytes, age_ns: int = HOUR_NS):
    """A file last modified `age_ns` ago (older than the racy window unless told otherwise)."""
    path.write_bytes(data)
    when = os.stat(path).st_mtime_ns - age_ns
    os.utime(path, ns=(when, when))
    return str(path)


def blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    return [write(folder / f"{i}.png", bytes([i]) * 100) for i in range(5)]


@pytest.fixture
def reads(monkeypatch):
    """Each path whose bytes were read to hash them."""
    seen = []
    real = hashes.file_hash

    def counting(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(hashes, "file_hash", counting)
    return seen


def test_a_second_call_reads_no_bytes(files, reads, tmp_path):
    cache = tmp_path / "cache"
    first = file_hashes(files, cache_dir=cache)
    assert first == [blake(bytes([i]) * 100) for i in range(5)]
    assert sorted(reads) == sorted(files)
    reads.clear()
    assert file_hashes(files, cache_dir=cache) == first
    assert reads == []


def test_a_changed_file_is_hashed_again(files, reads, tmp_path):
    cache = tmp_path / "cache"
    before = file_hashes(files, cache_dir=cache)
    # the same size, another content and time: rewritten
    write(tmp_path / "images" / "1.png", b"x" * 100, age_ns=HOUR_NS // 2)
    # only touched: read again, same hash
    os.utime(files[2], ns=(os.stat(files[2]).st_mtime_ns + 10**9,) * 2)
    reads.clear()
    after = file_hashes(files, cache_dir=cache)
    assert sorted(reads) == [files[1], files[2]]
    assert after[1] == blake(b"x" * 100) != before[1]
    assert after[:1] + after[2:] == before[:1] + before[2:]


def test_a_file_modified_just_now_is_not_remembered_yet(files, reads, tmp_path):
    """Its time might not change when it is written again within the same clock tick."""
    cache = tmp_path / "cache"
    fresh = write(tmp_path / "images" / "new.png", b"new", age_ns=0)
    file_hashes([*files, fresh], cache_dir=cache)
    reads.clear()
    file_hashes([*files, fresh], cache_dir=cache)
    assert reads == [fresh]


@pytest.mark.parametrize("garbage", [b"{not json", b"[1, 2]", b'{"format": 1, "files": 3}', b""])
def test_a_corrupt_index_is_ignored_and_rebuilt(files, reads, tmp_path, garbage):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / INDEX_FILE).write_bytes(garbage)
    assert file_hashes(files, cache_dir=cache) == [blake(bytes([i]) * 100) for i in range(5)]
    assert len(reads) == 5
    assert len(json.loads((cache / INDEX_FILE).read_text())["files"]) == 5


def test_a_wrong_entry_for_another_size_is_not_used(files, reads, tmp_path):
    cache = tmp_path / "cache"
    file_hashes(files, cache_dir=cache)
    index = json.loads((cache / INDEX_FILE).read_text())
    entry = index["files"][os.path.abspath(files[0])]
    entry[0] += 1  # recorded for another size
    entry[2] = "0" * 32
    (cache / INDEX_FILE).write_text(json.dumps(index))
    reads.clear()
    assert file_hashes(files[:1], cache_dir=cache) == [blake(bytes([0]) * 100)]
    assert reads == files[:1]


def test_threads_sharing_one_index_keep_every_entry(tmp_path, reads):
    cache, folder = tmp_path / "cache", tmp_path / "many"
    folder.mkdir()
    groups = [
        [write(folder / f"{g}-{i}.bin", f"{g}-{i}".encode()) for i in range(20)] for g in range(6)
    ]
    results = {}
    threads = [
        threading.Thread(
            target=lambda g=g: results.update({g: file_hashes(groups[g], None, cache)})
        )
        for g in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in range(6):
        assert results[g] == [blake(f"{g}-{i}".encode()) for i in range(20)]
    reads.clear()
    file_hashes([p for group in groups for p in group], cache_dir=cache)
    assert reads == []
    assert not [p for p in cache.iterdir() if p.name != INDEX_FILE]  # no temporary files left


def test_an_unwritable_cache_only_costs_time(files, reads, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    assert file_hashes(files, cache_dir=blocked) == file_hashes(files, cache_dir=blocked)
    assert len(reads) == 10


def test_progress_counts_the_files_read(files, tmp_path):
    heard = []
    file_hashes(files, lambda *p: heard.append(p), tmp_path / "cache")
    assert heard[-1] == ("Hashing images", 5, 5)
    heard.clear()
    file_hashes(files, lambda *p: heard.append(p), tmp_path / "cache")
    assert heard == []  # nothing read, nothing to show
