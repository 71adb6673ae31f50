"""Splits: LM-BFF's K-shot splits byte for byte, nested ladders, manifests, bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from promptworth.cli import main
from promptworth.data import kshot, sources, split_folder, splits, tasks
from promptworth.data import rows as task_rows
from promptworth.errors import PromptworthError

NOT_IN_CHECKSUM_FILE = ("CoLA", "mpqa", "subj")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def read_checksums(reference_dir: Path) -> dict[str, str]:
    lines = (reference_dir / "lmbff_kshot_checksum.md5").read_text().splitlines()
    return {line.split()[1]: line.split()[0] for line in lines if line.strip()}


@pytest.fixture(scope="module")
def kshot_out(tmp_path_factory, data_dir) -> Path:
    """All LM-BFF K=16 splits that can be drawn from this mirror, written once for the module."""
    out = tmp_path_factory.mktemp("kshot")
    kshot.kshot(out, data_dir=data_dir)
    return out


def test_kshot_reproduces_lmbff_published_md5(kshot_out, reference_dir):
    checksums = read_checksums(reference_dir)
    drawn = {p.parent.parent.name for p in kshot_out.glob("*/*/train.*")}
    expected = {path: digest for path, digest in checksums.items() if path.split("/")[0] in drawn}
    assert len(expected) == 120  # 8 tasks with a pool here and sums published, 5 seeds, 3 files
    mismatched = [path for path, digest in expected.items() if md5(kshot_out / path) != digest]
    assert mismatched == []


def test_kshot_writes_every_task_with_a_pool_here(kshot_out):
    names = sorted(p.name for p in kshot_out.iterdir())
    assert names == sorted(["SST-2", "sst-5", "mr", "cr", "mpqa", "subj", "trec", "CoLA", "RTE", "MRPC", "STS-B"])
    for folder in kshot_out.glob("*/16-*"):
        manifest = json.loads((folder / split_folder.MANIFEST).read_text())
        assert manifest["layout"] == "lmbff" and manifest["k"] == 16
        for name, digest in manifest["files"].items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_kshot_matches_the_mirrors_published_splits(kshot_out, data_dir):
    """Where the mirror holds LM-BFF's own split files, ours are identical to them."""
    compared = 0
    for published in (data_dir / "k-shot").glob("*/16-*/*.*"):
        ours = kshot_out / published.relative_to(data_dir / "k-shot")
        if ours.exists():
            assert ours.read_bytes() == published.read_bytes(), ours
            compared += 1
    assert compared >= 100


def lmbff_reference_sampler(data_dir: Path, task_names: list[str], k: int, seeds: list[int]) -> dict[str, bytes]:
    """An independent, literal rendering of LM-BFF's tools/generate_k_shot_data.py.

    It keeps the script's structure on purpose: one global numpy seed per (seed, task), seeds in
    the outer loop, GLUE files read as lists of lines (CoLA's list shuffled in place, so its
    shuffles accumulate), the others through pandas. Files are returned as bytes by path.
    """
    glue = {"CoLA": (1, False), "SST-2": (-1, True), "RTE": (-1, True), "MRPC": (0, True)}
    loaded = {}
    for name in task_names:
        folder = data_dir / "original" / name
        if name in glue:
            loaded[name] = {split: open(folder / f"{split}.tsv").readlines() for split in ("train", "dev")}
        else:
            loaded[name] = {split: pd.read_csv(folder / f"{split}.csv", header=None) for split in ("train", "test")}
    files: dict[str, bytes] = {}
    for seed in seeds:
        for name, data in loaded.items():
            np.random.seed(seed)
            if name in glue:
                column, has_header = glue[name]
                header, lines = (data["train"][:1], data["train"][1:]) if has_header else ([], data["train"])
                np.random.shuffle(lines)
                by_label: dict[str, list] = {}
                for line in lines:
                    by_label.setdefault(line.strip().split("\t")[column], []).append(line)
                prefix = f"{name}/{k}-{seed}/"
                files[prefix + "test.tsv"] = "".join(data["dev"]).encode()
                files[prefix + "train.tsv"] = "".join(header + [l for g in by_label.values() for l in g[:k]]).encode()
                files[prefix + "dev.tsv"] = "".join(header + [l for g in by_label.values() for l in g[k : 2 * k]]).encode()
            else:
                records = data["train"].values.tolist()
                np.random.shuffle(records)
                by_label = {}
                for record in records:
                    by_label.setdefault(record[0], []).append(record)
                prefix = f"{name}/{k}-{seed}/"
                files[prefix + "test.csv"] = data["test"].to_csv(header=False, index=False).encode()
                train = [r for g in by_label.values() for r in g[:k]]
                dev = [r for g in by_label.values() for r in g[k : 2 * k]]
                files[prefix + "train.csv"] = pd.DataFrame(train).to_csv(header=False, index=False).encode()
                files[prefix + "dev.csv"] = pd.DataFrame(dev).to_csv(header=False, index=False).encode()
    return files


def test_kshot_tasks_without_published_sums_match_an_independent_sampler(kshot_out, data_dir, reference_dir):
    reference = lmbff_reference_sampler(data_dir, [*NOT_IN_CHECKSUM_FILE, "SST-2", "mr"], 16, list(kshot.LMBFF_SEEDS))
    checksums = read_checksums(reference_dir)
    # The reference sampler itself reproduces the published sums where they exist.
    for path, content in reference.items():
        if path in checksums:
            assert hashlib.md5(content).hexdigest() == checksums[path], path
    for path, content in reference.items():
        assert (kshot_out / path).read_bytes() == content, path


def test_cola_seed_alone_replays_lmbffs_seed_order(kshot_out, tmp_path, data_dir):
    """CoLA's shuffles accumulate; asking for seed 42 alone still gives LM-BFF's 16-42."""
    kshot.kshot(tmp_path, ["CoLA"], seeds=[42], data_dir=data_dir)
    assert [p.name for p in (tmp_path / "CoLA").iterdir()] == ["16-42"]
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / "CoLA" / "16-42" / name).read_bytes() == (kshot_out / "CoLA" / "16-42" / name).read_bytes()


def test_kshot_cli_and_md5sum(tmp_path, data_dir, reference_dir):
    out = tmp_path / "k-shot"
    assert main(["kshot", "--data-dir", str(data_dir), "--out-dir", str(out), "--tasks", "SST-2", "trec", "--seeds", "13", "87"]) == 0
    checksums = read_checksums(reference_dir)
    written = sorted(str(p.relative_to(out)) for p in out.glob("*/*/*.*") if p.name != split_folder.MANIFEST)
    assert len(written) == 12
    for path in written:
        assert md5(out / path) == checksums[path]


def test_kshot_bad_input_leaves_nothing(tmp_path, data_dir, capsys):
    out = tmp_path / "k-shot"
    assert main(["kshot", "--data-dir", str(data_dir), "--out-dir", str(out), "--tasks", "SST-2", "CoLA", "--k", "3000"]) == 2
    assert "CoLA: K=3000 is larger than class '0' holds (2528 examples in the pool)" in capsys.readouterr().err
    assert not out.exists()  # SST-2 succeeded first, but nothing is published
    assert main(["kshot", "--data-dir", str(data_dir), "--out-dir", str(out), "--tasks", "Nope"]) == 2
    assert "unknown task 'Nope'" in capsys.readouterr().err
    assert main(["kshot", "--data-dir", str(data_dir), "--out-dir", str(out), "--tasks", "MNLI"]) == 2
    assert "MNLI: original/MNLI/train.tsv is not in the data mirror" in capsys.readouterr().err
    assert main(["kshot", "--data-dir", str(data_dir), "--out-dir", str(out), "--tasks", "CB"]) == 2
    assert "CB is not one of LM-BFF's tasks" in capsys.readouterr().err
    assert main(["kshot", "--data-dir", str(data_dir), "--out-dir", str(out), "--k", "0"]) == 2
    assert not out.exists()


def test_the_full_data_setting_trains_on_the_pool_less_the_kshot_dev(kshot_out, tmp_path, data_dir):
    out = tmp_path / "k-shot"
    assert main(["kshot", "--data-dir", str(data_dir), "--out-dir", str(out), "--tasks", "SST-2", "trec",
                 "--seeds", "42", "--full"]) == 0
    for task, name, pool in (("SST-2", "dev.tsv", 6920), ("trec", "dev.csv", 5452)):
        full, kshot = out / task / "all-42", kshot_out / task / "16-42"
        # the K-shot split's dev and test, byte for byte
        assert (full / name).read_bytes() == (kshot / name).read_bytes()
        assert (full / name.replace("dev", "test")).read_bytes() == (kshot / name.replace("dev", "test")).read_bytes()
        parts, small = split_folder.load_split(task, full), split_folder.load_split(task, kshot)
        rows = lambda dataset: Counter((r["text_a"], r["label"]) for r in dataset)  # noqa: E731
        # every pool row but the dev rows (as multisets: TREC's pool repeats some questions)
        assert len(parts["train"]) == pool - len(small["dev"])
        assert rows(parts["train"]) == rows(task_rows.load(task, "pool")) - rows(small["dev"])
        assert not rows(small["train"]) - rows(parts["train"])
        manifest = json.loads((full / split_folder.MANIFEST).read_text())
        assert manifest["size"] == "all" and manifest["k"] == 16 and manifest["data_seed"] == 42


def test_load_split_reads_lmbff_layout(kshot_out):
    parts = split_folder.load_split("sst-5", kshot_out / "sst-5" / "16-42")
    assert parts["train"].num_rows == parts["dev"].num_rows == 80
    assert parts["test"].num_rows == 2210
    assert sorted(parts["train"]["label"]) == sorted(list(range(5)) * 16)
    stsb = split_folder.load_split("STS-B", kshot_out / "STS-B" / "16-42")
    assert stsb["train"].num_rows == 32 and isinstance(stsb["train"][0]["label"], float)


# ---------------------------------------------------------------------------------------------
# Data-size ladders


def ladder_rows(folder: Path, part: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{part}.jsonl").read_text().splitlines()]


def idx(folder: Path, part: str) -> list[int]:
    return [row["idx"] for row in ladder_rows(folder, part)]


@pytest.fixture(scope="module")
def cb_ladder(tmp_path_factory, data_dir) -> dict:
    out = tmp_path_factory.mktemp("ladder")
    written = {}
    for seed in (1, 2):
        spec = splits.LadderSpec(sizes=(10, 20, 50, "all"), data_seed=seed, dev_policy="fixed", dev_size=32)
        written[seed] = splits.ladder("CB", spec, out / "CB", data_dir)
    return written


def test_ladder_is_nested_with_a_fixed_dev_set(cb_ladder):
    folders = cb_ladder[1]
    trains = [idx(folders[size], "train") for size in (10, 20, 50, "all")]
    assert [len(t) for t in trains] == [10, 20, 50, 250 - 32]
    for smaller, larger in zip(trains, trains[1:]):
        assert larger[: len(smaller)] == smaller
    devs = {tuple(idx(folders[size], "dev")) for size in folders}
    assert len(devs) == 1 and len(next(iter(devs))) == 32
    assert not set(next(iter(devs))) & set(trains[-1])
    assert len(ladder_rows(folders[10], "test")) == 56


def test_ladder_different_seeds_draw_different_subsets(cb_ladder):
    assert set(idx(cb_ladder[1][20], "train")) != set(idx(cb_ladder[2][20], "train"))
    assert idx(cb_ladder[1][10], "test") == idx(cb_ladder[2][10], "test")


def test_ladder_is_deterministic_to_the_byte(cb_ladder, tmp_path, data_dir):
    spec = splits.LadderSpec(sizes=(20,), data_seed=1, dev_policy="fixed", dev_size=32)
    again = splits.ladder("CB", spec, tmp_path / "CB", data_dir)[20]
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "manifest.json"):
        assert (again / name).read_bytes() == (cb_ladder[1][20] / name).read_bytes()


def test_ladder_manifest_records_files_and_sources(cb_ladder, data_dir):
    folder = cb_ladder[2][50]
    manifest = json.loads((folder / split_folder.MANIFEST).read_text())
    assert (manifest["task"], manifest["size"], manifest["data_seed"], manifest["train_rows"]) == ("CB", 50, 2, 50)
    assert manifest["dev_policy"] == "fixed" and manifest["dev_rows"] == 32
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    source = data_dir / "superglue" / "CB" / "train.jsonl"
    assert manifest["sources"]["superglue/CB/train.jsonl"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert split_folder.manifest_sha256(folder) == hashlib.sha256((folder / split_folder.MANIFEST).read_bytes()).hexdigest()


def test_ladder_rows_load_back(cb_ladder):
    parts = split_folder.load_split("CB", cb_ladder[1][20])
    assert [parts[p].num_rows for p in ("train", "dev", "test")] == [20, 32, 56]
    original = task_rows.load("CB", "pool")
    first = parts["train"][0]
    assert original[first["idx"]]["text_a"] == first["text_a"]


def test_size_zero_is_an_empty_training_set_with_the_dev_and_test_of_every_size(tmp_path, data_dir):
    spec = splits.LadderSpec(sizes=(0, 10), data_seed=1, dev_policy="fixed", dev_size=32)
    folders = splits.ladder("CB", spec, tmp_path / "CB", data_dir)
    assert folders[0].name == "0-1" and (folders[0] / "train.jsonl").read_bytes() == b""
    assert idx(folders[0], "dev") == idx(folders[10], "dev") and idx(folders[0], "test") == idx(folders[10], "test")
    manifest = json.loads((folders[0] / split_folder.MANIFEST).read_text())
    assert (manifest["size"], manifest["train_rows"], manifest["dev_rows"]) == (0, 0, 32)
    assert split_folder.manifest_size(folders[0]) == 0 and split_folder.manifest_size(folders[10]) == 10
    assert [split_folder.load_split("CB", folders[0])[p].num_rows for p in ("train", "dev", "test")] == [0, 32, 56]
    assert splits.parse_size("0") == 0


def test_ladder_same_as_train_dev_policy(tmp_path, data_dir):
    spec = splits.LadderSpec(sizes=(16, 32), data_seed=3, dev_policy="same_as_train")
    folders = splits.ladder("RTE", spec, tmp_path, data_dir)
    for size, folder in folders.items():
        train, dev = idx(folder, "train"), idx(folder, "dev")
        assert len(train) == len(dev) == size and not set(train) & set(dev)
    assert idx(folders[32], "train")[:16] == idx(folders[16], "train")


def test_the_fixed_subset_policy_pairs_its_runs_with_the_fixed_ones(tmp_path, data_dir, cb_ladder):
    """fixed_subset: the fixed policy's training rows, and the first <size> rows of its dev set: a run
    under it differs from its fixed twin (same seed, same size) in the dev set alone."""
    spec = splits.LadderSpec(sizes=(10, 20), data_seed=1, dev_policy="fixed_subset", dev_size=32)
    folders = splits.ladder("CB", spec, tmp_path / "CB", data_dir)
    fixed_dev = idx(cb_ladder[1][10], "dev")
    for size, folder in folders.items():
        assert idx(folder, "train") == idx(cb_ladder[1][size], "train")
        assert idx(folder, "dev") == fixed_dev[:size]
        assert idx(folder, "test") == idx(cb_ladder[1][size], "test")
    manifest = json.loads((folders[10] / split_folder.MANIFEST).read_text())
    assert (manifest["dev_policy"], manifest["dev_rows"], manifest["dev_size"]) == ("fixed_subset", 10, 32)


def test_the_fixed_subset_policy_needs_a_dev_set_as_large_as_the_training_set(tmp_path, data_dir, capsys):
    out = tmp_path / "CB"
    code = main(["split", "--task", "CB", "--sizes", "10", "40", "--data-seed", "1", "--dev-policy", "fixed_subset",
                 "--dev-size", "32", "--out-dir", str(out), "--data-dir", str(data_dir)])
    assert code == 2 and not out.exists()
    assert ("training size 40 under dev policy 'fixed_subset' needs as many dev rows of the fixed dev set, which holds "
            "32: raise dev_size") in capsys.readouterr().err


def test_ladder_test_limit_is_a_fixed_subset(tmp_path, data_dir):
    spec = splits.LadderSpec(sizes=(10,), data_seed=1, dev_size=16, test_limit=100)
    folder = splits.ladder("SST-2", spec, tmp_path / "a", data_dir)[10]
    other = splits.ladder("SST-2", splits.LadderSpec(sizes=(10,), data_seed=2, dev_size=16, test_limit=100), tmp_path / "b", data_dir)[10]
    test = idx(folder, "test")
    assert len(test) == 100 and test == sorted(test) and test == idx(other, "test")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sizes": (10, -3)}, "training size -3 must be a non-negative integer"),
        ({"sizes": (10, 0), "dev_policy": "same_as_train"}, "size 0 would have no dev set; use dev policy 'fixed'"),
        ({"sizes": (10, 10)}, r"duplicate training sizes in \[10, 10\]"),
        ({"sizes": ()}, "no training sizes given"),
        ({"sizes": (10,), "dev_policy": "fixed", "dev_size": None}, "needs a positive dev_size"),
        ({"sizes": ("all",), "dev_policy": "same_as_train"}, "cannot be used with size 'all'"),
        ({"sizes": (10,), "dev_policy": "random"}, "unknown dev policy"),
        ({"sizes": (0, 10), "dev_policy": "fixed_subset"}, "dev policy 'fixed_subset' draws as many dev rows"),
        ({"sizes": ("all",), "dev_policy": "fixed_subset"}, "dev policy 'fixed_subset' cannot be used with size 'all'"),
        ({"sizes": (10,), "dev_policy": "fixed_subset", "dev_size": None}, "'fixed_subset' needs a positive dev_size"),
    ],
)
def test_ladder_spec_rejects_bad_input(kwargs, message):
    kwargs = {"data_seed": 1, "dev_size": 8, **kwargs}
    with pytest.raises(PromptworthError, match=message):
        splits.LadderSpec(**kwargs)


def test_ladder_size_larger_than_the_pool_leaves_nothing(tmp_path, data_dir, capsys):
    out = tmp_path / "CB"
    code = main(["split", "--task", "CB", "--sizes", "10", "300", "--data-seed", "1", "--dev-size", "32", "--out-dir", str(out), "--data-dir", str(data_dir)])
    assert code == 2
    assert "training size 300 exceeds the pool (250 rows, 32 of them kept for dev: at most 218 to train on)" in \
        capsys.readouterr().err
    assert not out.exists()
    # a dev set as large as the pool leaves nothing to train on, at any size, "all" included
    # (before: "training size 10 exceeds the pool (250 rows, 1000000000 of them kept for dev)", and
    # "all" drew an empty training set)
    for size in ("10", "all"):
        code = main(["split", "--task", "CB", "--sizes", size, "--data-seed", "1", "--dev-size", "1000000000", "--out-dir",
                     str(out), "--data-dir", str(data_dir)])
        assert code == 2
        assert "dev_size 1,000,000,000 leaves no training row: the pool holds 250 rows" in capsys.readouterr().err
        assert not out.exists()


def test_split_cli_bad_sizes(tmp_path, data_dir, capsys):
    out = tmp_path / "CB"
    assert main(["split", "--task", "CB", "--sizes", "ten", "--data-seed", "1", "--dev-size", "32", "--out-dir", str(out)]) == 2
    assert "training size 'ten' must be a non-negative integer (0: the zero-shot point, no training rows) or 'all'" in capsys.readouterr().err
    assert main(["split", "--task", "BoolQ", "--sizes", "10", "--data-seed", "1", "--dev-size", "32", "--out-dir", str(out)]) == 2
    assert "BoolQ: superglue/BoolQ/train.jsonl is not in the data mirror" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Every split file is verified when read


def _copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


def test_a_row_edited_after_the_manifest_is_refused(cb_ladder, tmp_path):
    folder = _copy(cb_ladder[1][20], tmp_path / "20-1")
    path = folder / "train.jsonl"
    path.write_text(path.read_text().replace('"label": 0', '"label": 1', 1))
    with pytest.raises(PromptworthError, match=r"20-1/train\.jsonl has changed since its split was written: its sha256 "
                       r"does not match the sha256 in .*20-1/manifest\.json"):
        split_folder.load_split("CB", folder)
    assert split_folder.load_split_part("CB", folder, "dev").num_rows == 32  # the untouched parts still load


def test_a_file_the_manifest_does_not_list_is_refused(cb_ladder, tmp_path):
    folder = _copy(cb_ladder[1][20], tmp_path / "20-1")
    manifest = json.loads((folder / split_folder.MANIFEST).read_text())
    del manifest["files"]["test.jsonl"]
    (folder / split_folder.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PromptworthError, match=r"test\.jsonl cannot be verified: .* lists no such file"):
        split_folder.load_split("CB", folder)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a readable manifest"),
        ("[]", "not a split manifest"),
        ('{"task": "CB"}', "not a split manifest"),
        ('{"task": "CB", "files": {"train.jsonl": 1}}', "not a split manifest"),
        ('{"task": "CB", "files": {"/dev/zero": "ab"}}', "'/dev/zero' is not the name of a file in the split folder"),
        ('{"task": "CB", "files": {"../20-1/x": "ab"}}', "is not the name of a file in the split folder"),
        ('{"task": "CB", "files": {"..": "ab"}}', "'..' is not the name of a file in the split folder"),
        ('{"a": ' * 5000 + "1" + "}" * 5000, "nested too deeply to be a manifest"),
    ],
)
def test_a_malformed_manifest_is_one_clear_error(cb_ladder, tmp_path, content, message):
    folder = _copy(cb_ladder[1][20], tmp_path / "20-1")
    (folder / split_folder.MANIFEST).write_text(content)
    with pytest.raises(PromptworthError, match=message):
        split_folder.load_split("CB", folder)


def test_the_split_must_be_of_the_requested_task(cb_ladder, data_dir):
    with pytest.raises(PromptworthError, match=r"20-1 holds a split of CB \(its manifest\.json\), not of SST-2"):
        split_folder.load_split("SST-2", cb_ladder[1][20])
    with pytest.raises(PromptworthError, match=r"not a K-shot folder of mr: it lies in 'SST-2', LM-BFF's splits of mr "
                       r"lie in 'mr' \(k-shot/mr/16-42\)"):
        split_folder.load_split("mr", data_dir / "k-shot" / "SST-2" / "16-42")
    with pytest.raises(PromptworthError, match="cannot be verified"):
        split_folder.load_split("CB", data_dir / "k-shot" / "SST-2" / "16-42")


def test_published_kshot_files_are_verified(data_dir, tmp_path):
    folder = _copy(data_dir / "k-shot" / "SST-2" / "16-42", tmp_path / "k-shot" / "SST-2" / "16-42")
    assert split_folder.load_split("SST-2", folder)["train"].num_rows == 32  # an intact copy loads
    path = folder / "train.tsv"
    lines = path.read_text().splitlines(keepends=True)
    sentence, label = lines[1].rstrip("\n").split("\t")
    lines[1] = f"{sentence}\t{1 - int(label)}\n"
    path.write_text("".join(lines))
    with pytest.raises(PromptworthError, match=r"16-42/train\.tsv has changed since its split was written: its sha256 "
                       r"does not match the published sha256 of k-shot/SST-2/16-42/"):
        split_folder.load_split("SST-2", folder)


def test_a_folder_without_manifest_or_published_checksums_cannot_be_verified(cb_ladder, data_dir, tmp_path):
    folder = _copy(cb_ladder[1][20], tmp_path / "20-1")
    (folder / split_folder.MANIFEST).unlink()
    with pytest.raises(PromptworthError, match=r"20-1 cannot be verified: it has no manifest\.json and is not one of "
                       r"LM-BFF's published K-shot folders of CB; write a verified split with `promptworth split`"):
        split_folder.load_split("CB", folder)
    unpublished = _copy(data_dir / "k-shot" / "SST-2" / "16-42", tmp_path / "SST-2" / "16-7")
    with pytest.raises(PromptworthError, match="cannot be verified"):
        split_folder.load_split("SST-2", unpublished)
    with pytest.raises(PromptworthError, match=r"split folder .*/absent does not exist"):
        split_folder.load_split("SST-2", tmp_path / "absent")


def _rewrite(folder: Path, name: str, content: bytes) -> None:
    """Replace one file of a split and write its manifest again, as if the split was made so."""
    (folder / name).write_bytes(content)
    manifest = json.loads((folder / split_folder.MANIFEST).read_text())
    manifest["files"][name] = hashlib.sha256(content).hexdigest()
    (folder / split_folder.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"idx": 0, "text_a": "caf\xe9", "text_b": "b", "label": 0}\n', r"train\.jsonl: not valid UTF-8 \(byte 25\)"),
        (b'{"idx": 0, "text_a": "a", "text_b": "b", "label": 0}\n{"idx": 1,\n', r"train\.jsonl: line 2 is not valid JSON"),
        (b'[1, 2]\n', r"train\.jsonl: line 1 is not a JSON object"),
        (b'{"text_a": "a", "text_b": "b", "label": 0}\n', r"train\.jsonl: row 1 has no integer 'idx'"),
        (b'{"idx": 3, "text_a": "a", "label": 0}\n', r"row 1 \(idx 3\) has no field 'text_b' of CB"),
        (b'{"idx": 3, "text_a": "a", "text_b": null, "label": 0}\n', r"row 1 \(idx 3\): field 'text_b' must be a string"),
        (b'{"idx": 3, "text_a": "a", "text_b": "b", "label": 3}\n', r"row 1 \(idx 3\): label 3 is not a label index in 0\.\.2"),
        (b'{"idx": 3, "text_a": "a", "text_b": "b", "label": "0"}\n', r"label '0' is not a label index"),
    ],
)
def test_bad_rows_in_a_verified_split_file_are_one_clear_error(cb_ladder, tmp_path, content, message):
    folder = _copy(cb_ladder[1][20], tmp_path / "20-1")
    _rewrite(folder, "train.jsonl", content)
    with pytest.raises(PromptworthError, match=message):
        split_folder.load_split("CB", folder)


def test_a_regression_label_must_be_a_finite_number(data_dir, tmp_path):
    spec = splits.LadderSpec(sizes=(8,), data_seed=1, dev_size=8, test_limit=8)
    folder = splits.ladder("STS-B", spec, tmp_path / "STS-B", data_dir)[8]
    row = json.loads((folder / "train.jsonl").read_text().splitlines()[0])
    _rewrite(folder, "train.jsonl", json.dumps({**row, "label": float("nan")}).encode() + b"\n")
    with pytest.raises(PromptworthError, match=r"label nan is not a finite number"):
        split_folder.load_split("STS-B", folder)
