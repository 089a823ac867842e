"""Fixtures of `make test-integration`: a real RTSP server, ffmpeg-written files, vsda-infer as a user runs it.

Needs Debian packages (the Makefile installs them as root): GStreamer's RTSP server with python3-gi for the
system Python, the x264 encoder, and ffmpeg. Every server listens on 127.0.0.1 and is started and stopped by
the test that uses it. Each case adds a row (command, exit code, report fields) to the table printed at the
end and written to ``$VSDA_INTEGRATION_TABLE`` when set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SYSTEM_PYTHON = os.environ.get("VSDA_SYSTEM_PYTHON", "/usr/bin/python3")
SERVER = Path(__file__).with_name("rtsp_server.py")
ROWS: list[dict[str, Any]] = []


def missing_tools() -> list[str]:
    """Return what this machine lacks for the integration tests (empty: all there)."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    ok = Path(SYSTEM_PYTHON).exists() and subprocess.run([SYSTEM_PYTHON, "-c", probe],
                                                         capture_output=True).returncode == 0
    if not ok:
        missing.append(f"{SYSTEM_PYTHON} with GstRtspServer (python3-gi, gir1.2-gst-rtsp-server-1.0)")
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = missing_tools()
    if missing:  # make test-integration installs them; a bare pytest run says what to install
        pytest.exit(f"make test-integration needs: {', '.join(missing)}", returncode=3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """gst-rtsp-server in a child process (the system Python): start(), kill(), stop()."""

    def __init__(self, port: int, size: str = "1280x720", fps: int = 30) -> None:
        self.port, self.size, self.fps = port, size, fps
        self.url = f"rtsp://127.0.0.1:{port}/test"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(self.port), self.size, str(self.fps)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"rtsp_server did not start: {line} {self.proc.stderr.read()}")
        return self

    def kill(self) -> None:
        """End the server at once, as a crash or a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    server = RtspServer(free_port())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' tiny DDRNet exported to ONNX with its metadata (trained scale 64x128)."""
    from tests.deploy.test_backends import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("model"))[0]


@dataclass
class Run:
    """A finished vsda-infer process: exit code, streams, report, seconds."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def infer_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "vsda_deploy.cli", *map(str, args)]


def finish(proc: subprocess.Popen, args: list[str], report: Path | None, started: float, timeout: float = 120) -> Run:
    out, err = proc.communicate(timeout=timeout)
    data = json.loads(report.read_text()) if report is not None and report.exists() else None
    return Run(args, proc.returncode, out, err, data, time.monotonic() - started)


def run_infer(*args: str | Path, report: Path | None = None, timeout: float = 120) -> Run:
    """Run vsda-infer to its end."""
    full = [*map(str, args), *(["--report", str(report)] if report else [])]
    started = time.monotonic()
    proc = subprocess.Popen(infer_command(*full), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return finish(proc, full, report, started, timeout)


def record(case: str, run: Run, **fields: Any) -> None:
    """Add one row to the case table: the command as a user types it, the exit code, the report fields."""
    shown = " ".join(a if "/" not in a or a.startswith("rtsp://") else Path(a).name for a in run.args)
    ROWS.append({"case": case, "command": f"vsda-infer {shown}", "exit": run.code, **fields})


def summary(report: dict[str, Any] | None) -> dict[str, Any]:
    """Return the report fields the case table shows."""
    if report is None:
        return {"report": "not written"}
    lat = report["latency_ms"]
    return {"frames": report["frames"], "fps": report["fps"], "input_size": report["input_size"],
            "reconnects": report["reconnects"], "wait_p50_ms": lat["wait"]["p50"], "total_p50_ms": lat["total"]["p50"],
            "stopped_by": report["stopped_by"], "errors": report["errors"]}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not ROWS:
        return
    lines = ["| case | command | exit | report fields |", "| --- | --- | --- | --- |"]
    for row in ROWS:
        fields = {k: v for k, v in row.items() if k not in ("case", "command", "exit")}
        shown = re.sub(r"(?<![:/\w])/(?:[\w.-]+/)+", "", json.dumps(fields))  # temporary folders
        lines.append(f"| {row['case']} | `{row['command']}` | {row['exit']} | `{shown}` |")
    table = "\n".join(lines)
    target = os.environ.get("VSDA_INTEGRATION_TABLE")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(table + "\n")
    print("\n" + table)
