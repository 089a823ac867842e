"""Output paths checked before the first frame; atomic JSON that leaves nothing behind (vsda_deploy/outputs.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from vsda_deploy.options import OptionError
from vsda_deploy.outputs import OutputError, check_dir_output, check_distinct, check_file_output, write_json


def test_file_outputs_are_probed_and_errors_name_the_option(tmp_path: Path) -> None:
    path = check_file_output(tmp_path / "a" / "b" / "r.json", "--report")
    assert path.parent.is_dir() and list(path.parent.iterdir()) == []  # the folder made, the probe gone
    with pytest.raises(OptionError, match=rf"^--report {tmp_path}: needs a file name, this is a folder$"):
        check_file_output(tmp_path, "--report")
    with pytest.raises(OutputError, match=r"^--save-jsonl /proc/f\.jsonl: cannot write there \(No such file"):
        check_file_output(Path("/proc/f.jsonl"), "--save-jsonl")
    with pytest.raises(OutputError, match=r"^--report /proc/x/r\.json: cannot create the folder /proc/x"):
        check_file_output(Path("/proc/x/r.json"), "--report")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(OutputError, match=rf"^--save-labels {folder / 'l'}: cannot create the folder .*Permission"):
        check_dir_output(folder / "l", "--save-labels")


def test_a_folder_that_refuses_writes_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only folder does to a user who is not root (as root, it is simulated)."""
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("vsda_deploy.outputs.os.open", refuse)
    denied = r"cannot write there \(Permission denied\)$"
    with pytest.raises(OutputError, match=rf"^--report {tmp_path / 'r.json'}: {denied}"):
        check_file_output(tmp_path / "r.json", "--report")
    with pytest.raises(OutputError, match=rf"^--save-labels {tmp_path / 'l'}: {denied}"):
        check_dir_output(tmp_path / "l", "--save-labels")


def test_folder_outputs_and_distinct_paths(tmp_path: Path) -> None:
    assert check_dir_output(tmp_path / "labels", "--save-labels").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OptionError, match=rf"^--save-labels {tmp_path / 'f'}: needs a folder, this is a file$"):
        check_dir_output(tmp_path / "f", "--save-labels")
    check_distinct([("--report", tmp_path / "r.json"), ("--save-jsonl", None), ("--save-video", tmp_path / "v.mp4")])
    with pytest.raises(OptionError, match="^--save-jsonl .*r.json: the same file as --report$"):
        check_distinct([("--report", tmp_path / "r.json"), ("--save-jsonl", tmp_path / "x" / ".." / "r.json")])


def test_write_json_is_atomic_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_json(tmp_path / "r.json", {"a": 1}, "--report")
    assert path.read_text() == '{"a": 1}'

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("json.dump", full)
    with pytest.raises(OutputError, match=r"^--report .*r\.json: cannot write \(No space left on device\)$"):
        write_json(tmp_path / "r.json", {"a": 2}, "--report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"] and path.read_text() == '{"a": 1}'
