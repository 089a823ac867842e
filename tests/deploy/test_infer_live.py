"""vsda-infer on live sources: the live line in an outage, waiting apart from work, a real-time overlay video,
one line per failure, OpenCV/FFmpeg noise hidden (vsda_deploy/infer.py, cli.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from tests.deploy.test_infer import invoke, moving_frames
from tests.deploy.test_sources import FakeCapture, _scripted_factory
from vsda_deploy import live_source, sources
from vsda_deploy.infer import InferOptions, InferResult, Stream, run_inference
from vsda_deploy.sources import open_source


def test_the_live_line_says_reconnecting_during_an_outage(models: tuple[Path, Path]) -> None:
    frames = moving_frames(6)
    gate = threading.Semaphore(1)  # the camera waits for the consumer: nothing is dropped
    sessions = [FakeCapture(frames[:3], gate=gate), FakeCapture([], opened=False), FakeCapture(frames[3:], gate=gate)]
    source = open_source("camera0", capture_factory=_scripted_factory(sessions, []), backoff_s=0.2, max_reconnects=3)
    stream = Stream(InferOptions("camera0", models[0], warmup=0), on_frame=lambda out: gate.release(), source=source)
    results: list[InferResult] = []
    runner = threading.Thread(target=lambda: results.append(stream.run()))
    runner.start()
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while runner.is_alive() and time.monotonic() < deadline:
        line = stream.status_line()  # what the timer draws, whether frames come or not
        if not lines or line != lines[-1]:
            lines.append(line)
        if stream.processed == 6 and "reconnecting (1/3)" in line:
            stream.request_stop("test")  # the second outage: enough seen
        time.sleep(0.01)
    runner.join(timeout=10)
    number = r"\d+\.\d"
    outage = re.compile(rf"3 frames · {number} FPS · total p50 {number} ms · wait p50 {number} ms · dropped 0 · "
                        r"corrupt 0 · reconnects (\d) · reconnecting \((\d)/3\)")
    seen = {outage.fullmatch(line).groups() for line in lines if outage.fullmatch(line)}
    assert ("1", "2") in seen, lines  # one reconnect failed, the second attempt is waiting
    assert any(line.startswith("6 frames ·") for line in lines)  # back after the outage
    assert results and results[0].report["frames"]["processed"] == 6 and results[0].report["reconnects"] >= 2


def test_waiting_for_a_live_frame_is_not_counted_as_latency(models: tuple[Path, Path]) -> None:
    cam = FakeCapture(moving_frames(12), period_s=0.1)  # a 10 FPS camera; the tiny model takes a few ms
    source = open_source("camera0", capture_factory=lambda t, a: cam, max_reconnects=0)
    report = run_inference(InferOptions("camera0", models[0], warmup=2), source=source).report
    latency = report["latency_ms"]
    assert latency["wait"]["p50"] > 30  # the frame period, less the work
    assert latency["total"]["p50"] < latency["wait"]["p50"]
    assert latency["total"]["p50"] >= latency["inference"]["p50"] and latency["read"]["p50"] < 5


def test_the_overlay_video_of_a_live_source_keeps_real_time(models: tuple[Path, Path], tmp_path: Path) -> None:
    cam = FakeCapture(moving_frames(40), period_s=0.04)  # 25 FPS, as the fake capture reports
    source = open_source("camera0", capture_factory=lambda t, a: cam, max_reconnects=0)
    options = InferOptions("camera0", models[0], save_video=tmp_path / "v.avi", save_jsonl=tmp_path / "f.jsonl")
    report = run_inference(options, on_frame=lambda out: time.sleep(0.1), source=source).report  # a slow model
    stamps = [json.loads(line)["timestamp"] for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    written, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert report["frames"]["dropped"] >= 15 and report["frames"]["processed"] == len(stamps) <= 20
    assert fps == 25.0 and abs(written - (1 + round((stamps[-1] - stamps[0]) * 25))) <= 1  # seconds = seconds
    assert report["outputs"]["--save-video"]["written"] == written


def test_a_lost_stream_is_one_line_and_the_report_is_written(models: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = [FakeCapture(moving_frames(5))]
    monkeypatch.setattr(sources, "open_capture", _scripted_factory(sessions, []))
    monkeypatch.setattr(live_source, "MAX_BACKOFF_S", 0.01)
    code, output = invoke("camera0", "--model", models[0], "--reconnects", "2", "--report", tmp_path / "r.json")
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 1 and errors == ["error: camera0: stream lost; 2 reconnect attempts failed"], output
    assert output.count("stream lost") == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["errors"] == ["camera0: stream lost; 2 reconnect attempts failed"] and report["reconnects"] == 2


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsda_deploy.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera 0")
def test_native_noise_is_hidden_unless_verbose(models: tuple[Path, Path], tmp_path: Path) -> None:
    """OpenCV and FFmpeg print straight to the process's stderr: only a real process shows what a user sees."""
    url = "rtsp://127.0.0.1:9/none"  # nothing listens on the discard port: connection refused
    quiet = run_cli(url, "--model", models[0], "--reconnects", "1", "--report", tmp_path / "r.json")
    assert quiet.returncode == 1
    assert quiet.stderr.splitlines() == [f"error: {url}: cannot open the stream (unreachable, wrong path or "
                                         "credentials, or an unsupported codec); 2 connection attempts failed"]
    assert json.loads((tmp_path / "r.json").read_text())["reconnects"] == 1
    camera = run_cli("camera0", "--model", models[0], "--reconnects", "0")
    assert camera.returncode == 1 and len(camera.stderr.splitlines()) == 1, camera.stderr
    loud = run_cli(url, "--model", models[0], "--reconnects", "0", "--verbose")
    assert loud.returncode == 1 and len(loud.stderr.splitlines()) > 1  # FFmpeg's own "Connection refused"
