"""Remembered checksums: reused while the files are the same, recomputed the moment they are not.

Real files on disk; RACY_SECONDS is lowered so that the test need not wait two seconds for a
file's change to become trustworthy (the writes that must be told apart are 50 ms apart, more
than the kernel's timestamp tick).
"""

from __future__ import annotations

import os
import time
import tomllib
from pathlib import Path

import pytest

from preview_slots import fingerprint, sources
from preview_slots.config import Config, build_config
from preview_slots.errors import ConfigError, SourceError
from preview_slots.fingerprint import Remembered, identity
from preview_slots.seedscan import Scan, scan


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)


def config_for(tmp_path: Path, checksums: str | None = "checksums.json") -> Config:
    cache = "" if checksums is None else f'checksums_file = "{checksums}"\n'
    path = tmp_path / "preview-slots.toml"
    path.write_text(f'[seeds]\ndir = "seeds"\n\n[cache]\n{cache}')
    return build_config(tomllib.loads(path.read_text()), path)


def write_seed(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "seeds" / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "001.sql").write_text(text)
    return folder / "001.sql"


def test_a_fresh_change_is_never_remembered(tmp_path: Path) -> None:
    path = tmp_path / "f.sql"
    path.write_text("SELECT 1;")
    assert identity([path], kind="seed") is None  # changed just now: racy


def test_identity_follows_content_not_just_size_and_mtime(tmp_path: Path,
                                                          no_racy_window: None) -> None:
    path = tmp_path / "f.sql"
    path.write_text("SELECT 1;")
    before = identity([path], kind="seed")
    stat = path.stat()
    time.sleep(0.05)
    path.write_text("SELECT 2;")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime back (cp -p)
    after = identity([path], kind="seed")
    assert before is not None and after is not None and before != after


def test_seed_checksum_is_reused_then_recomputed_on_change(
        tmp_path: Path, no_racy_window: None, monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_for(tmp_path)
    seed = write_seed(tmp_path, "CREATE TABLE t (x int);\n")
    scans: list[str] = []
    def counting_scan(text: str) -> Scan:
        scans.append(text)
        return scan(text)

    monkeypatch.setattr("preview_slots.sources.scan", counting_scan)
    first = sources.resolve_seed(config, "v1")
    second = sources.resolve_seed(config, "v1")
    assert first.checksum == second.checksum and len(scans) == 1  # read once
    assert (tmp_path / "checksums.json").exists()

    time.sleep(0.05)
    seed.write_text("CREATE TABLE t (y int);\n")
    third = sources.resolve_seed(config, "v1")
    assert third.checksum != first.checksum and len(scans) == 2

    time.sleep(0.05)
    seed.write_text("\\! rm -rf /\n")  # a remembered good checksum never hides a bad file
    with pytest.raises(SourceError, match="meta-commands"):
        sources.resolve_seed(config, "v1")


def test_corrupt_store_means_compute_again(tmp_path: Path, no_racy_window: None) -> None:
    config = config_for(tmp_path)
    write_seed(tmp_path, "SELECT 1;\n")
    (tmp_path / "checksums.json").write_text("{not json")
    assert len(sources.resolve_seed(config, "v1").checksum) == 64


def test_dry_run_reads_but_never_writes(tmp_path: Path, no_racy_window: None) -> None:
    config = config_for(tmp_path)
    write_seed(tmp_path, "SELECT 1;\n")
    sources.resolve_seed(config, "v1", remember=False)
    assert not (tmp_path / "checksums.json").exists()


def test_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config_for(tmp_path, None).cache.checksums_file == (
        tmp_path / "xdg" / "preview-slots" / "checksums.json")
    assert config_for(tmp_path, "").cache.checksums_file is None
    assert config_for(tmp_path, "c.json").cache.checksums_file == (
        tmp_path / "c.json")
    with pytest.raises(ConfigError):
        build_config({"cache": {"checksums_file": 3}}, tmp_path / "x.toml")


def test_store_keeps_the_newest_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint, "MAX_ENTRIES", 3)
    memo = Remembered(tmp_path / "c.json")
    for n in range(5):
        memo.put(f"k{n}", {"checksum": str(n)})
    assert [memo.get(f"k{n}") is not None for n in range(5)] == [False, False, True, True, True]
