"""The task registry and the data layer, on the real files of the mirror."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import datasets
import pytest

import data_origin
from promptworth.cli import main
from promptworth.data import rows, sources, split_folder, splits, tasks
from promptworth.errors import PromptworthError

# Row counts of ../shared/data/README.md (train pool, labelled evaluation set).
README_ROWS = {
    "SST-2": (6920, 872),
    "sst-5": (8544, 2210),
    "mr": (8662, 2000),
    "cr": (1775, 2000),
    "mpqa": (8606, 2000),
    "subj": (8000, 2000),
    "trec": (5452, 500),
    "CoLA": (8551, 1043),
    "MRPC": (3668, 408),
    "RTE": (2490, 277),
    "STS-B": (5749, 1500),
    "CB": (250, 56),
    "RTE-SuperGLUE": (2490, 277),
    "COPA": (400, 100),
    "WiC": (5428, 638),
    "WSC": (554, 104),
    "MultiRC": (27243, 4848),
    "BoolQ": (None, 3270),
}
NUM_CLASSES = {"SST-2": 2, "sst-5": 5, "trec": 6, "CB": 3, "MNLI": 3, "STS-B": None}


def test_registry_covers_the_22_tasks():
    registry = tasks.registry()
    lmbff = [n for n, s in registry.items() if s.family == "lmbff"]
    superglue = [n for n, s in registry.items() if s.family == "superglue"]
    assert len(lmbff) == 15 and len(superglue) == 7
    for name, classes in NUM_CLASSES.items():
        spec = registry[name]
        assert spec.is_regression == (classes is None)
        if classes:
            assert spec.num_labels == classes


@pytest.mark.parametrize("name", sorted(README_ROWS))
def test_each_task_loads_with_the_readme_row_counts(name, data_dir):
    pool_rows, eval_rows = README_ROWS[name]
    evaluation = rows.load(name, "eval", data_dir)
    assert isinstance(evaluation, datasets.Dataset)
    assert evaluation.num_rows == eval_rows
    assert "text_a" in evaluation.column_names and "label" in evaluation.column_names
    assert all(isinstance(text, str) and text for text in evaluation["text_a"])
    if pool_rows is not None:
        assert rows.load(name, "pool", data_dir).num_rows == pool_rows


def test_rows_have_the_task_fields(data_dir):
    copa = rows.load("COPA", "eval", data_dir)[0]
    assert copa["choice1"] == "The toilet filled with water." and copa["label"] == 1
    wsc = rows.load("WSC", "eval", data_dir)[0]
    assert (wsc["span1_text"], wsc["span2_text"], wsc["span2_index"]) == ("anyone", "him", 47)
    multirc = rows.load("MultiRC", "eval", data_dir)
    assert {"answer", "group", "text_b"} <= set(multirc.column_names)
    stsb = rows.load("STS-B", "eval", data_dir)
    assert stsb.features["label"].dtype == "float64" and stsb[0]["label"] == 5.0
    cb = rows.load("CB", "eval", data_dir)
    assert cb.features["label"].names == ["contradiction", "entailment", "neutral"]
    assert cb[0]["label"] == 0  # contradiction


@pytest.mark.parametrize("name", ["MNLI", "SNLI", "QQP", "QNLI"])
def test_missing_pools_fail_clearly_but_published_kshot_splits_load(name, data_dir):
    with pytest.raises(PromptworthError, match=rf"{name}: original/{name}/train.tsv is not in the data mirror"):
        rows.load(name, "pool", data_dir)
    spec = tasks.get_task(name)
    folder = data_dir / "k-shot" / name / "16-42"
    train = split_folder.load_split_part(name, folder, "train")
    dev = split_folder.load_split_part(name, folder, "dev")
    assert train.num_rows == dev.num_rows == 16 * spec.num_labels
    assert sorted(set(train["label"])) == list(range(spec.num_labels))


def test_missing_boolq_pool_fails_clearly(data_dir):
    with pytest.raises(PromptworthError, match="BoolQ: superglue/BoolQ/train.jsonl is not in the data mirror"):
        rows.load("BoolQ", "pool", data_dir)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(PromptworthError, match=r"unknown task 'SST-3'; known tasks: SST-2, sst-5"):
        tasks.get_task("SST-3")


def _copy_task(data_dir: Path, tmp_path: Path, relpath: str) -> Path:
    target = tmp_path / "mirror" / relpath
    shutil.copytree(data_dir / relpath, target)
    return tmp_path / "mirror"


def test_corrupt_file_is_refused(data_dir, tmp_path):
    mirror = _copy_task(data_dir, tmp_path, "original/SST-2")
    path = mirror / "original" / "SST-2" / "dev.tsv"
    path.write_bytes(path.read_bytes().replace(b"\t1\n", b"\t0\n", 1))
    with pytest.raises(PromptworthError, match=r"dev.tsv is corrupt: its sha256 does not match"):
        rows.load("SST-2", "eval", mirror)


def test_data_dir_from_environment(data_dir, monkeypatch):
    monkeypatch.setenv(sources.DATA_ENV, str(data_dir))
    assert sources.resolve_data_dir(None) == data_dir
    monkeypatch.setenv(sources.DATA_ENV, "/nonexistent/mirror")
    with pytest.raises(PromptworthError, match=r"data mirror /nonexistent/mirror \(from \$PROMPTWORTH_DATA\) is not a folder"):
        sources.resolve_data_dir(None)


def test_invalid_jsonl_names_the_line(data_dir, tmp_path):
    mirror = _copy_task(data_dir, tmp_path, "superglue/CB")
    path = mirror / "superglue" / "CB" / "train.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    # The edited file no longer matches its checksum: that is caught first.
    with pytest.raises(PromptworthError, match="corrupt"):
        rows.load("CB", "pool", mirror)
    spec = tasks.get_task("CB")
    with pytest.raises(PromptworthError, match=r"line 251 is not valid JSON"):
        rows.read_records(spec, path)


# ---------------------------------------------------------------------------------------------
# Downloads from the original sources, exercised on a local copy of them ($PROMPTWORTH_DATA_ORIGIN,
# a file:// address; tests/data_origin.py rebuilds the sources' archives from the mirror's files)


def _origin(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *names: str) -> Path:
    """The sources of ``names`` under ``tmp_path/origin``, which every download now comes from."""
    origin = tmp_path / "origin"
    data_origin.build(data_dir, origin, names)
    monkeypatch.setenv(sources.ORIGIN_ENV, origin.as_uri())
    return origin


def test_download_lmbff_task_from_archive(data_dir, tmp_path, monkeypatch):
    _origin(data_dir, tmp_path, monkeypatch, "SST-2", "mr")
    root = tmp_path / "cache"
    sources.download_tasks([tasks.get_task("SST-2")], root)
    assert sorted(p.name for p in (root / "original" / "SST-2").iterdir()) == ["dev.tsv", "train.tsv"]
    assert not (root / "original" / "mr").exists()
    assert rows.load("SST-2", "pool", root).num_rows == 6920
    assert [p.name for p in root.iterdir()] == ["original"]  # no staging left behind


def test_download_superglue_task_from_archive(data_dir, tmp_path, monkeypatch):
    _origin(data_dir, tmp_path, monkeypatch, "CB")
    root = tmp_path / "cache"
    sources.download_tasks([tasks.get_task("CB")], root)
    assert rows.load("CB", "eval", root).num_rows == 56
    assert (root / "superglue" / "CB" / "fewglue_train32.jsonl").is_file()


def test_the_origin_keeps_each_source_s_host_and_path(monkeypatch):
    monkeypatch.delenv(sources.ORIGIN_ENV, raising=False)
    assert sources.source_url("lmbff") == "https://nlp.cs.princeton.edu/projects/lm-bff/datasets.tar"
    monkeypatch.setenv(sources.ORIGIN_ENV, "http://127.0.0.1:8000/copy/")
    assert sources.source_url("superglue", task="CB") == (
        "http://127.0.0.1:8000/copy/dl.fbaipublicfiles.com/glue/superglue/data/v2/CB.zip")
    assert sources.source_url("fewglue", task="CB", split="dev32") == (
        "http://127.0.0.1:8000/copy/raw.githubusercontent.com/timoschick/fewglue/master/FewGLUE/CB/dev32.jsonl")
    monkeypatch.setenv(sources.ORIGIN_ENV, "/srv/copy")
    with pytest.raises(PromptworthError, match=r"PROMPTWORTH_DATA_ORIGIN is '/srv/copy': give an http://, https:// "
                                               r"or file:// address"):
        sources.source_url("lmbff")


def test_corrupt_download_leaves_nothing(data_dir, tmp_path, monkeypatch):
    origin = _origin(data_dir, tmp_path, monkeypatch)
    archive = origin / sources.source_path("lmbff")
    archive.parent.mkdir(parents=True)
    content = (data_dir / "original" / "SST-2" / "dev.tsv").read_bytes() + b"extra\t1\n"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("original/SST-2/dev.tsv")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    root = tmp_path / "cache"
    message = (rf"the download from {archive.as_uri()} is corrupt: its original/SST-2/dev.tsv does not match the "
               r"published file's sha256 \(nothing was written\)")
    with pytest.raises(PromptworthError, match=message):
        sources.download_tasks([tasks.get_task("SST-2")], root)
    assert not root.exists()  # the download folder this call created is removed again
    root.mkdir()
    with pytest.raises(PromptworthError, match="corrupt"):
        sources.download_tasks([tasks.get_task("SST-2")], root)
    assert list(root.iterdir()) == []  # one that existed stays, empty


def test_unreachable_source_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.ORIGIN_ENV, (tmp_path / "absent").as_uri())
    with pytest.raises(PromptworthError, match="could not download file://.*/absent/nlp.cs.princeton.edu/"):
        sources.download_tasks([tasks.get_task("SST-2")], tmp_path)


def test_registry_label_words_cover_every_label():
    for name, spec in tasks.registry().items():
        labels = ["0", "1"] if spec.is_regression else list(spec.labels)
        assert set(spec.label_words) == set(labels), name
        assert spec.templates, name
        if spec.null_words:
            assert set(spec.null_words) == set(labels), name
        json.dumps(spec.templates)


def _fresh_machine(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """No data_dir, no $PROMPTWORTH_DATA, an empty home: the cache folder does not exist yet."""
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    cache = home / ".cache" / "promptworth" / "data"
    assert not cache.exists()
    return cache


def test_download_fallback_starts_on_a_fresh_machine(data_dir, tmp_path, monkeypatch, capsys):
    """The cache path, resolved once and passed on, is still the cache: the download is tried."""
    _origin(data_dir, tmp_path, monkeypatch, "SST-2", "CB")
    cache = _fresh_machine(monkeypatch, tmp_path / "home")
    assert sources.resolve_data_dir(None) == cache
    assert sources.resolve_data_dir(sources.resolve_data_dir(None)) == cache
    assert rows.load("SST-2", "pool").num_rows == 6920
    out = tmp_path / "splits" / "CB"
    code = main(["split", "--task", "CB", "--sizes", "10", "--data-seed", "1", "--dev-size", "8", "--out-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (cache / "superglue" / "CB" / "val.jsonl").is_file() and (out / "10-1" / "manifest.json").is_file()


def test_the_download_cache_follows_xdg_cache_home(tmp_path, monkeypatch):
    _fresh_machine(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.resolve_data_dir(None) == tmp_path / "xdg" / "promptworth" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: a relative path is ignored
    assert sources.resolve_data_dir(None) == tmp_path / "home" / ".cache" / "promptworth" / "data"


def test_a_download_cache_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    cache = _fresh_machine(monkeypatch, tmp_path / "home")
    cache.parent.mkdir(parents=True)
    cache.write_text("not a folder")
    assert main(["split", "--task", "CB", "--sizes", "10", "--data-seed", "1", "--dev-size", "8",
                 "--out-dir", str(tmp_path / "out")]) == 2
    assert "promptworth: error: cannot write downloaded data into" in capsys.readouterr().err


def test_download_fallback_failure_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(sources.ORIGIN_ENV, (tmp_path / "absent").as_uri())
    _fresh_machine(monkeypatch, tmp_path / "home")
    assert main(["split", "--task", "SST-2", "--sizes", "10", "--data-seed", "1", "--dev-size", "8",
                 "--out-dir", str(tmp_path / "out")]) == 2
    assert "promptworth: error: could not download file://" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_download_that_is_not_an_archive_is_a_clear_error(tmp_path, monkeypatch):
    origin = tmp_path / "origin"
    monkeypatch.setenv(sources.ORIGIN_ENV, origin.as_uri())
    for source, task in (("lmbff", "SST-2"), ("superglue", "CB")):
        bogus = origin / sources.source_path(source, task=task)
        bogus.parent.mkdir(parents=True)
        bogus.write_text("<html>not found</html>")
        with pytest.raises(PromptworthError, match=rf"the download from {bogus.as_uri()} is not a valid archive"):
            sources.download_tasks([tasks.get_task(task)], tmp_path / "cache")


# ---------------------------------------------------------------------------------------------
# Bad bytes and values in a task file are one-line errors


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("SST-2", b"sentence\tlabel\ncaf\xe9 au lait\t1\n", r"dev\.tsv: not valid UTF-8 \(byte 18\)"),
        ("mr", b'0,"caf\xe9"\n', r"test\.csv: not valid UTF-8 \(byte 6\)"),
        ("CB", b'{"premise": "p", "hypothesis": "h", "label": "entailment"}\n{"premise"\n',
         r"val\.jsonl: line 2 is not valid JSON"),
        ("SST-2", b"sentence\tlabel\nfine\t7\n", r"dev\.tsv: record 1: SST-2: label '7' is not one of the task's labels"),
        ("STS-B", b"h\th\th\th\th\th\th\th\th\th\n0\t0\t0\t0\t0\t0\t0\ta\tb\tfive\n",
         r"dev\.tsv: record 1: STS-B: label 'five' is not a finite number"),
        ("STS-B", b"h\th\th\th\th\th\th\th\th\th\n0\t0\t0\t0\t0\t0\t0\ta\tb\tnan\n", r"label 'nan' is not a finite number"),
    ],
)
def test_bad_content_of_a_task_file_is_one_clear_error(tmp_path, name, content, message):
    spec = tasks.get_task(name)
    path = tmp_path / spec.file_name("eval")
    path.write_bytes(content)
    with pytest.raises(PromptworthError, match=message):
        rows.rows_from_records(spec, rows.read_records(spec, path), path)
