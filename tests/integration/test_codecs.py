"""vsda-infer on files written by ffmpeg: H.264, H.265, MJPEG, VP9, grayscale, variable frame rate, rotation
metadata, a truncated file. Every frame ffprobe decodes is processed, at the size the player shows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import pytest

from tests.integration.conftest import record, run_infer, summary

SECONDS, FPS, SIZE = 2, 15, "320x180"
SOURCE = ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={FPS}", "-t", str(SECONDS)]
VFR = ["-vf", "setpts='if(lt(N,10),N,10+(N-10)*3)/15/TB'", "-fps_mode", "vfr"]
CASES = {  # name: (file, ffmpeg output options, the (H, W) frames are shown at)
    "h264": ("h264.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], (180, 320)),
    "h265": ("h265.mp4", ["-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=error"], (180, 320)),
    "mjpeg": ("mjpeg.avi", ["-c:v", "mjpeg", "-q:v", "3"], (180, 320)),
    "vp9": ("vp9.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime"], (180, 320)),
    "gray": ("gray.mkv", ["-c:v", "ffv1", "-pix_fmt", "gray"], (180, 320)),
    "vfr": ("vfr.mkv", [*VFR, "-c:v", "libx264"], (180, 320)),
    "rotated": ("rotated.mp4", ["-c:v", "libx264"], (320, 180)),  # then tagged: rotate 90 (a phone held upright)
    "truncated": ("truncated.ts", ["-c:v", "libx264", "-f", "mpegts"], (180, 320)),
}


def ffmpeg(out: Path, options: list[str]) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *SOURCE, *options, str(out)], check=True)
    return out


def tag_rotation(path: Path, degrees: int) -> Path:
    """Return a copy of ``path`` whose stream says "display rotated by ``degrees``" (ffmpeg 5 keeps it on copy)."""
    out = path.with_name(f"tagged_{path.name}")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-c", "copy", "-metadata:s:v:0",
                    f"rotate={degrees}", str(out)], check=True)
    return out


def decodable_frames(path: Path) -> int:
    """Return how many video frames ffprobe decodes."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0].strip(","))  # the side data may add fields and lines


@pytest.mark.parametrize("case", sorted(CASES))
def test_codec_matrix(case: str, model: Path, tmp_path: Path) -> None:
    name, options, shown = CASES[case]
    path = ffmpeg(tmp_path / name, options)
    if case == "rotated":
        path = tag_rotation(path, 90)
    if case == "truncated":  # cut in the middle of a packet, as a recording that stopped
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.6) + 7])
    expected = decodable_frames(path)
    run = run_infer(path, "--model", model, "--save-labels", tmp_path / "labels", report=tmp_path / "r.json")
    assert run.code == 0, run.stderr
    frames = run.report["frames"]
    assert frames["processed"] == expected and expected > 0, (frames, expected)
    if case == "truncated":
        assert expected < SECONDS * FPS
    elif case != "vfr":  # a variable rate file has as many frames as its timestamps give
        assert expected == SECONDS * FPS
    labels = sorted((tmp_path / "labels").glob("*.png"))
    assert len(labels) == expected
    assert cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED).shape == shown  # rotation applied, like a player
    record(f"file: {case}", run, **{k: v for k, v in summary(run.report).items()
                                    if k in ("frames", "input_size", "errors")}, label_hw=list(shown))
