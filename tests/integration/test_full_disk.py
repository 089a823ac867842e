"""vsda-infer writing onto a disk that fills up: a real 1 MB tmpfs mounted by the test (needs root)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from tests.deploy.test_infer_outputs import decoded_frames, noisy_video
from tests.integration.conftest import record, run_infer, summary


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (run make test-integration as root): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return noisy_video(tmp_path_factory.mktemp("clip") / "noise.avi", 150)  # about 6 MB of overlay at 320x192


@pytest.mark.parametrize("container", [".avi", ".mp4"])
def test_the_video_fills_the_disk(small_disk: Path, clip: Path, model: Path, tmp_path: Path, container: str) -> None:
    video = small_disk / f"overlay{container}"
    run = run_infer(clip, "--model", model, "--save-video", video, report=tmp_path / "r.json")
    assert run.code == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"error: --save-video {video}: ")
    entry = run.report["outputs"]["--save-video"]
    assert not entry["complete"] and run.report["errors"] == [run.stderr.strip()[len("error: "):]]
    assert not any(p.name.startswith(".") for p in small_disk.iterdir())  # no .partial left
    if container == ".avi":
        assert entry["kept"] == f"kept: {decoded_frames(video)} playable frames"
    else:
        assert not video.exists()
    record(f"--save-video {container} onto a full 1 MB disk", run, **summary(run.report),
           video_written=entry["written"], kept=entry["kept"])


def test_the_report_on_the_full_disk_is_one_more_line(small_disk: Path, clip: Path, model: Path) -> None:
    video, report = small_disk / "overlay.avi", small_disk / "r.json"
    run = run_infer(clip, "--model", model, "--save-video", video, report=report)
    lines = run.stderr.splitlines()
    assert run.code == 1 and len(lines) == 2, run.stderr
    assert lines[0].startswith(f"error: --save-video {video}: writing video frame ")
    assert lines[1] == f"error: --report {report}: cannot write (No space left on device)"
    assert "frames processed" in run.stdout and not report.exists()
    cap = cv2.VideoCapture(str(video))
    assert cap.read()[0]
    cap.release()
    assert not any(p.name.startswith(".") for p in small_disk.iterdir())
    record("--save-video and --report on a full 1 MB disk", run, report="not written (2nd error line)",
           stderr=lines)
