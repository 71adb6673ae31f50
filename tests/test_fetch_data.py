"""`promptworth fetch-data`: a study's or some tasks' files, downloaded ahead of time from a local
copy of the original sources served over HTTP (tests/data_origin.py, the mirror's real files) and
verified against their published sha256; a corrupt download or file is one error and leaves nothing."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

import data_origin
from promptworth.cli import main
from promptworth.data import sources
from promptworth.files import sha256_file

REPO = Path(__file__).resolve().parents[1]
TINY_STUDY = REPO / "config" / "studies" / "tiny.yaml"  # tasks SST-2 and CB


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without a data mirror: an empty download cache ($XDG_CACHE_HOME), no $PROMPTWORTH_DATA."""
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.delenv("PROMPTWORTH_FAST", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "promptworth" / "data"


@pytest.fixture
def served(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The sources of SST-2, mr and CB on an HTTP server of localhost, the download origin:
    ``(origin folder, the paths asked for so far)``."""
    origin = tmp_path / "origin"
    data_origin.build(data_dir, origin, ["SST-2", "mr", "CB"])
    with data_origin.serve(origin) as (address, asked):
        monkeypatch.setenv(sources.ORIGIN_ENV, address)
        yield origin, asked


def test_fetch_data_downloads_a_study_s_files_once_and_verifies_them(cache, served, capsys):
    origin, asked = served
    assert main(["fetch-data", "--configfile", str(TINY_STUDY), "--tasks", "mr"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["SST-2: original/SST-2/train.tsv (downloaded; sha256 verified)",
                       "SST-2: original/SST-2/dev.tsv (downloaded; sha256 verified)"]
    assert "CB: superglue/CB/val.jsonl (downloaded; sha256 verified)" in out
    assert out[-1] == f"6 files of 3 tasks in {cache}: 6 downloaded, 6 verified against their published sha256"
    # LM-BFF's archive once for SST-2 and mr; CB's zip and its two FewGLUE files
    assert sorted(asked) == sorted("/" + path for path in (
        sources.source_path("lmbff"), sources.source_path("superglue", task="CB"),
        sources.source_path("fewglue", task="CB", split="train"), sources.source_path("fewglue", task="CB", split="dev32")))
    for relpath in ("original/SST-2/train.tsv", "original/mr/test.csv", "superglue/CB/fewglue_dev32.jsonl"):
        assert sha256_file(cache / relpath) == sources.known_checksums()[relpath]
    assert not [p for p in cache.rglob(".staging-*")]
    # a second fetch finds them, verifies them and downloads nothing
    assert main(["fetch-data", "--tasks", "SST-2", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(f["file"], f["downloaded"], f["published_sha256"]) for f in listed] == [
        ("original/SST-2/train.tsv", False, True), ("original/SST-2/dev.tsv", False, True)]
    assert listed[0]["sha256"] == sources.known_checksums()["original/SST-2/train.tsv"]
    assert len(asked) == 4


def test_a_corrupt_download_is_one_error_and_leaves_nothing(cache, served, capsys):
    origin, _ = served
    archive = origin / sources.source_path("superglue", task="CB")
    with zipfile.ZipFile(archive) as zipped:
        files = {name: zipped.read(name) for name in zipped.namelist()}
    files["CB/val.jsonl"] = files["CB/val.jsonl"].replace(b"entailment", b"neutral", 1)
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, content in files.items():
            zipped.writestr(name, content)
    assert main(["fetch-data", "--tasks", "SST-2", "CB"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"promptworth: error: the download from {sources.source_url('superglue', task='CB')} is corrupt: its "
        "superglue/CB/val.jsonl does not match the published file's sha256 (nothing was written)"]
    assert captured.out == ""
    assert not cache.exists()  # SST-2's good files are not kept either: all or nothing


def test_a_corrupt_file_in_the_cache_is_named(cache, served, capsys):
    assert main(["fetch-data", "--tasks", "mr"]) == 0
    path = cache / "original" / "mr" / "test.csv"
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["fetch-data", "--tasks", "mr"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"promptworth: error: {path} is corrupt: its sha256 does not match the published file original/mr/test.csv; "
        "delete it and it is downloaded again")
    path.unlink()
    assert main(["fetch-data", "--tasks", "mr"]) == 0
    assert sha256_file(path) == sources.known_checksums()["original/mr/test.csv"]


def test_a_mirror_is_verified_never_downloaded_into(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(sources.ORIGIN_ENV, (tmp_path / "no-origin").as_uri())  # any download would fail
    mirror = tmp_path / "mirror"
    shutil.copytree(data_dir / "original" / "SST-2", mirror / "original" / "SST-2")
    assert main(["fetch-data", "--tasks", "SST-2", "--data-dir", str(mirror)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "SST-2: original/SST-2/train.tsv (already there; sha256 verified)"
    assert main(["fetch-data", "--tasks", "mr", "--data-dir", str(mirror)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"promptworth: error: mr: original/mr/train.csv is not in the data mirror {mirror}; its training pool is missing, "
        "only its published K-shot splits (k-shot/mr) can be used")
    assert sorted(p.name for p in mirror.iterdir()) == ["original"]


@pytest.mark.parametrize("argv, message", [
    ([], "fetch-data: give --configfile FILE (a study's tasks) or --tasks TASK ..."),
    (["--tasks", "SST-3"], "unknown task 'SST-3'; known tasks: SST-2, sst-5,"),
    (["--configfile", "nowhere.yaml"], "config file nowhere.yaml: cannot read it"),
])
def test_bad_arguments_are_one_line(cache, argv, message, capsys):
    assert main(["fetch-data", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"promptworth: error: {message}")
    assert not cache.exists()


def test_a_file_its_source_lacks_is_named(data_dir, cache, tmp_path, monkeypatch, capsys):
    origin = tmp_path / "origin"
    data_origin.build(data_dir, origin, ["BoolQ"])  # the mirror has no BoolQ training pool: nor has this copy
    monkeypatch.setenv(sources.ORIGIN_ENV, origin.as_uri())
    assert main(["fetch-data", "--tasks", "BoolQ"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"promptworth: error: BoolQ: superglue/BoolQ/train.jsonl is not in the download from its source (into {cache})")
