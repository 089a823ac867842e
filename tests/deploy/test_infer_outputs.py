"""vsda-infer when a disk fills up: a non-zero exit, one line naming the option and the file, the report still
written and saying what was lost, the video kept playable where its container allows, no temporary file left
(vsda_deploy/infer.py, overlay_video.py, sinks.py). The disk is a file size limit (RLIMIT_FSIZE) on a real
vsda-infer process."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.deploy.test_infer import invoke

OPENCV_SAYS_WHEN_A_WRITE_FAILS = int(cv2.__version__.split(".")[0]) >= 5  # VideoWriter.write returns False
LIMIT = 400_000  # bytes any one file may grow to: about 15 noisy 192x320 MJPG frames


def noisy_video(path: Path, frames: int) -> Path:
    """Write an MJPG video of random frames (incompressible: every overlay frame is large)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (320, 192))
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (192, 320, 3), dtype=np.uint8))
    writer.release()
    return path


def run_limited(*args: str | Path, limit: int = LIMIT) -> subprocess.CompletedProcess:
    """Run vsda-infer with every file it writes capped at ``limit`` bytes (a write past it fails with EFBIG)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail instead

    return subprocess.run([sys.executable, "-m", "vsda_deploy.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, preexec_fn=cap, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def decoded_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return noisy_video(tmp_path_factory.mktemp("clip") / "noise.avi", 40)


@pytest.mark.parametrize("container", [".avi", ".mp4"])
def test_a_full_disk_during_save_video(models: tuple[Path, Path], clip: Path, tmp_path: Path, container: str) -> None:
    out = tmp_path / "out"
    video, report = out / f"overlay{container}", out / "report.json"
    res = run_limited(clip, "--model", models[0], "--save-video", video, "--save-jsonl", out / "frames.jsonl",
                      "--report", report, "--warmup", "0")
    assert res.returncode == 1, res.stderr
    errors = res.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: --save-video {video}: "), res.stderr
    data = json.loads(report.read_text())  # the report is still written
    entry = data["outputs"]["--save-video"]
    assert not entry["complete"] and entry["error"] in errors[0] and data["errors"] == [errors[0][len("error: "):]]
    assert data["outputs"]["--save-jsonl"]["complete"]
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) == data["frames"]["processed"]
    if container == ".avi":  # plays without its index: kept up to the last good frame
        playable = decoded_frames(video)
        assert entry["kept"] == f"kept: {playable} playable frames" and 0 < playable <= entry["written"]
        if OPENCV_SAYS_WHEN_A_WRITE_FAILS:  # the stream stopped at that frame
            assert "writing video frame" in entry["error"] and data["stopped_by"] == "--save-video failed"
            assert data["frames"]["processed"] < 40
        else:  # OpenCV 4: found when the video is closed
            assert "could not be finished" in entry["error"]
    else:  # an .mp4 needs its index at the end: nothing playable is left, and nothing at all
        assert "nothing kept" in errors[0] and not video.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(["report.json", "frames.jsonl"] +
                                                          ([video.name] if video.exists() else []))


def test_a_full_disk_for_jsonl_keeps_whole_lines(models: tuple[Path, Path], clip: Path, tmp_path: Path) -> None:
    res = run_limited(clip, "--model", models[0], "--save-jsonl", tmp_path / "f.jsonl", "--report",
                      tmp_path / "r.json", limit=8_000)  # about 600 bytes of JSON per frame: 13 lines fit
    assert res.returncode == 1 and res.stderr.startswith(f"error: --save-jsonl {tmp_path / 'f.jsonl'}: writing line ")
    data = json.loads((tmp_path / "r.json").read_text())
    entry = data["outputs"]["--save-jsonl"]
    kept = (tmp_path / "f.jsonl").read_text().splitlines()
    assert entry["kept"] == f"kept the {len(kept)} complete lines written before" and len(kept) == entry["written"]
    assert all(json.loads(line)["index"] == i for i, line in enumerate(kept))
    assert 0 < len(kept) < 40 and sorted(p.name for p in tmp_path.iterdir()) == ["f.jsonl", "r.json"]


def test_a_report_that_cannot_be_written_at_the_end_is_one_line(models: tuple[Path, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills between the check before the first frame and the end: the summary still prints."""
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((32, 48, 3), np.uint8))
    monkeypatch.setattr("json.dump", full)
    code, output = invoke(folder, "--model", models[0], "--report", tmp_path / "r.json")
    assert code == 1 and "3 frames processed" in output
    assert output.strip().splitlines()[-1] == (f"error: --report {tmp_path / 'r.json'}: cannot write (No space left "
                                               "on device)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
