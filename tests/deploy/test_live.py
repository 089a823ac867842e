"""The live status line: refreshed on a timer, log records printed above it (vsda_deploy/live.py)."""

from __future__ import annotations

import io
import logging
import re
import time

from rich.console import Console

from vsda_deploy.live import ConsoleLogHandler, live_line, log_to_console


def test_log_records_print_above_the_line_and_the_line_refreshes_without_frames() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    calls = []

    def status() -> str:
        calls.append(1)
        return f"12 frames · reconnecting ({len(calls)}/5)"

    logger = logging.getLogger("vsda-test-live")
    logger.propagate = False
    logger.addHandler(ConsoleLogHandler(console))
    try:
        with live_line(status, console):
            logger.warning("rtsp://cam: stream stopped, reconnect attempt 1 of 5")
            time.sleep(1.0)  # no update is pushed: only the timer redraws
    finally:
        logger.handlers.clear()
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n").splitlines()
    assert len(calls) >= 3  # drawn on the timer, several times, with no frame arriving
    assert "WARNING: rtsp://cam: stream stopped, reconnect attempt 1 of 5" in lines  # a whole line of its own
    assert "12 frames · reconnecting (3/5)" in lines


def test_log_to_console_replaces_its_earlier_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        first = log_to_console(Console(file=io.StringIO()), logging.INFO)
        second = log_to_console(Console(file=io.StringIO()), logging.WARNING)
        assert first not in root.handlers and second in root.handlers and root.level == logging.WARNING
    finally:
        root.handlers[:], _ = before[0], root.setLevel(before[1])
