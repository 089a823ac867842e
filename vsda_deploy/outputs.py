"""Where ``vsda-infer`` writes, checked before the first frame, and written so a failure never passes silently.

* ``check_outputs`` runs before the stream starts: every output path (``--report``, ``--save-video``,
  ``--save-labels``, ``--save-jsonl``) must be a file or folder as the option needs, its folder must be
  creatable, a probe file must be writable there, and the video container must have an encoder.
* ``OutputError`` is a write or close that failed; its one-line message starts with the option and the
  file. ``write_json`` writes atomically and leaves no temporary file behind when it fails.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vsda_deploy.errors import VsdaError
from vsda_deploy.options import OptionError

LOW_SPACE_BYTES = 1 << 20  # below this much free space a failed write is put down to a full disk


class OutputError(VsdaError, OSError):
    """An output that cannot be written or finished; the message starts with the option and the file.

    ``kept`` says what was kept of it when the failure came at its close (a failed write leaves that to
    ``Sink.salvage``).
    """

    def __init__(self, message: str, kept: str | None = None) -> None:
        super().__init__(message)
        self.kept = kept


def hidden_temp(path: Path, tag: str = "partial") -> Path:
    """Return the hidden name ``path`` is written under before it is renamed into place (same folder)."""
    return path.with_name(f".{path.stem}.{tag}{path.suffix}")


def reason(e: BaseException | None, folder: Path) -> str:
    """Return why a write in ``folder`` failed, in words (``e``: the OSError, if there was one)."""
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno)
    try:
        if shutil.disk_usage(folder).free < LOW_SPACE_BYTES:
            return os.strerror(errno.ENOSPC)
    except OSError:
        pass
    return "refused by the writer: disk full, or a file size limit?"


def _probe(folder: Path, option: str, path: Path) -> None:
    """Create and remove a hidden file in ``folder``; OutputError naming the option if that fails."""
    probe = folder / f".vsda-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot write there ({e.strerror})") from None


def _make_folder(folder: Path, option: str, path: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot create the folder {folder} ({e.strerror})") from None


def check_file_output(path: Path, option: str) -> Path:
    """Return ``path`` once a file can be written there (its folder is created); else one error naming ``option``."""
    if path.is_dir():
        raise OptionError(f"{option} {path}: needs a file name, this is a folder")
    _make_folder(path.parent, option, path)
    _probe(path.parent, option, path)
    return path


def check_dir_output(path: Path, option: str) -> Path:
    """Return ``path`` once it is a writable folder (created); else one error naming ``option``."""
    if path.exists() and not path.is_dir():
        raise OptionError(f"{option} {path}: needs a folder, this is a file")
    _make_folder(path, option, path)
    _probe(path, option, path)
    return path


def check_distinct(paths: Iterable[tuple[str, Path | None]]) -> None:
    """Raise OptionError when two output options name the same file."""
    seen: dict[str, str] = {}
    for option, path in paths:
        if path is None:
            continue
        key = os.path.abspath(path)
        if key in seen:
            raise OptionError(f"{option} {path}: the same file as {seen[key]}")
        seen[key] = option


def write_json(path: Path, data: Any, option: str) -> Path:
    """Write ``data`` as JSON atomically (hidden temp file, then rename); OutputError names ``option``."""
    tmp = hidden_temp(path, f"{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{option} {path}: cannot write ({reason(e, path.parent)})") from None
    return path
