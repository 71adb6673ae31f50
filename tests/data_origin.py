"""The original data sources, rebuilt from the data mirror and served on localhost: a download
origin (``$PROMPTWORTH_DATA_ORIGIN``) for the tests and the newcomer test, which have no internet.

:func:`build` writes each source's files where ``promptworth.data.sources.source_path`` says they
lie, in the sources' published formats: LM-BFF's ``datasets.tar`` (``original/<task>/<file>``, as
LM-BFF's ``data/download_dataset.sh`` unpacks it), SuperGLUE's ``<TASK>.zip`` (``<TASK>/<file>``)
and FewGLUE's ``<TASK>/train.jsonl`` and ``dev32.jsonl``, each file the mirror's own bytes (so the
published sha256 match). :func:`serve` serves a folder over HTTP on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable, Iterator

from promptworth.data.fetch import files_read
from promptworth.data.sources import FEWGLUE_SPLITS, source_path
from promptworth.data.tasks import TaskSpec, get_task, registry


def _target(out: Path, source: str, **fields: str) -> Path:
    path = out / source_path(source, **fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _present(mirror: Path, spec: TaskSpec) -> list[Path]:
    """The files of ``spec`` that its runs read and the mirror has."""
    return [mirror / spec.dir / name for name in files_read(spec) if (mirror / spec.dir / name).is_file()]


def build(mirror: Path, out: Path, task_names: Iterable[str] | None = None) -> list[str]:
    """The sources' files of ``task_names`` (default: every task of the registry the mirror has a
    folder for) under ``out``, from the mirror's files; the tasks written."""
    specs = ([get_task(name) for name in task_names] if task_names is not None
             else [spec for spec in registry().values() if (mirror / spec.dir).is_dir()])
    lmbff = [spec for spec in specs if spec.family == "lmbff"]
    if lmbff:
        with tarfile.open(_target(out, "lmbff"), "w") as tar:
            for spec in lmbff:
                for path in _present(mirror, spec):
                    tar.add(path, arcname=f"{spec.dir}/{path.name}")
    for spec in specs:
        if spec.family != "superglue":
            continue
        folder = Path(spec.dir).name
        with zipfile.ZipFile(_target(out, "superglue", task=folder), "w") as archive:
            for path in _present(mirror, spec):
                archive.write(path, arcname=f"{folder}/{path.name}")
        for role, name in spec.fewshot.items():
            shutil.copyfile(mirror / spec.dir / name, _target(out, "fewglue", task=folder, split=FEWGLUE_SPLITS[role]))
    return [spec.name for spec in specs]


class _Handler(SimpleHTTPRequestHandler):
    """Serves the folder; records each path asked for (``server.served``); logs nothing."""

    def do_GET(self) -> None:
        self.server.served.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """``(address, paths asked for so far)`` of an HTTP server of ``folder`` on 127.0.0.1, for
    the block's duration."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    server.served = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.served  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
