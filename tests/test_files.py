"""The one place outputs are written all or nothing (promptworth.files): files, folders of files,
and folders built in a staging folder and published."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from promptworth.errors import PromptworthError
from promptworth.files import publish_folder, staging_folder, write_files, write_json


def test_a_published_folder_replaces_the_older_copy_and_gets_a_plain_mode(tmp_path: Path) -> None:
    final = tmp_path / "out" / "model"
    final.mkdir(parents=True)
    (final / "weights.txt").write_text("old")
    with staging_folder(tmp_path / "out", "the model") as staging:
        built = staging / "model"
        built.mkdir()
        (built / "weights.txt").write_text("new")
        (built / "config.txt").write_text("new")
        publish_folder(built, final)
    assert sorted(p.read_text() for p in final.iterdir()) == ["new", "new"]
    assert stat.S_IMODE(final.stat().st_mode) & 0o055  # not mkdtemp's 0700
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model"]  # no staging left


def test_a_folder_of_anything_else_is_never_replaced(tmp_path: Path) -> None:
    """Only an earlier output of the same kind is replaced: a file of another name, a sub-folder or
    a link in the folder, or the folder itself a link, is refused and left as it was."""
    final = tmp_path / "out" / "model"
    final.mkdir(parents=True)
    (final / "notes.txt").write_text("mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for make, message in (
        (lambda: None, "holds 'notes.txt', which promptworth did not write there"),
        (lambda: ((final / "notes.txt").unlink(), (final / "sub").mkdir()), "holds 'sub'"),
        (lambda: ((final / "sub").rmdir(), (final / "weights.txt").symlink_to(elsewhere)), "holds 'weights.txt'"),
        (lambda: (shutil.rmtree(final), final.symlink_to(elsewhere)), "model is a link"),
    ):
        make()
        with pytest.raises(PromptworthError, match=message):
            with staging_folder(tmp_path / "out", "the model") as staging:
                built = staging / "model"
                built.mkdir()
                (built / "weights.txt").write_text("new")
                publish_folder(built, final)
    assert final.is_symlink() and elsewhere.is_dir() and not any(elsewhere.iterdir())


def test_a_failed_build_leaves_nothing_not_even_the_folders_it_created(tmp_path: Path) -> None:
    parent = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError):
        with staging_folder(parent, "the model") as staging:
            (staging / "half").mkdir()
            raise RuntimeError("killed")
    assert not (tmp_path / "a").exists()


def test_an_unwritable_place_is_one_error_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PromptworthError, match="cannot write the model into"):
        with staging_folder(blocker / "sub", "the model"):
            raise AssertionError("the block must not run")
    with pytest.raises(PromptworthError, match="is a file, not a folder"):
        publish_folder(tmp_path, blocker)


def test_files_and_json_appear_whole_or_not_at_all(tmp_path: Path) -> None:
    def write(folder: Path) -> None:
        (folder / "a.md").write_text("a")
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        write_files(tmp_path / "tables", write)
    assert not (tmp_path / "tables").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(PromptworthError, match="non-finite"):
        write_json(tmp_path / "r.json", {"score": float("nan")})
    assert list(tmp_path.iterdir()) == []
