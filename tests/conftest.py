"""Test collection: tests/integration (a real RTSP server, ffmpeg files) runs only in `make test-integration`."""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("VSDA_INTEGRATION") == "1" else ["integration"]
