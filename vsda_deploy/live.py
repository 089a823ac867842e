"""``vsda-infer``'s live status line on a terminal, and log records that never garble it.

* ``live_line(status, console)``: a Rich ``Live`` line that re-reads ``status()`` on a timer (4 times
  a second), not per frame, so it keeps moving while no frame arrives (``reconnecting (3/5)``).
* ``ConsoleLogHandler``: logging through the same Rich console. While the line is shown, Rich prints
  each record above it; a handler writing to the real stderr would break the line instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.text import Text

REFRESH_PER_SECOND = 4.0


class ConsoleLogHandler(logging.Handler):
    """A logging handler that prints one plain line per record on a Rich console (``LEVEL: message``)."""

    def __init__(self, console: Console, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.console = console
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # logging must never take the stream down
            self.handleError(record)


def log_to_console(console: Console, level: int) -> ConsoleLogHandler:
    """Route the root logger to ``console`` at ``level`` (replacing an earlier ConsoleLogHandler); return it."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, ConsoleLogHandler)]:
        root.removeHandler(handler)
    handler = ConsoleLogHandler(console)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


@contextmanager
def live_line(status: Callable[[], str], console: Console) -> Iterator[Live]:
    """Show ``status()`` as one line on ``console`` within the block, refreshed on a timer; removed at the end."""
    with Live(console=console, get_renderable=lambda: Text(status(), no_wrap=True, overflow="ellipsis"),
              refresh_per_second=REFRESH_PER_SECOND, transient=True) as live:
        yield live
