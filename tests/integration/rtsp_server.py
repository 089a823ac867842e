"""An RTSP server for `make test-integration`: GStreamer's gst-rtsp-server serving H.264 on 127.0.0.1 only.

Run it with the system Python that has python3-gi (Debian: /usr/bin/python3), not the project's venv:

    /usr/bin/python3 tests/integration/rtsp_server.py PORT [WIDTHxHEIGHT] [FPS]

It serves a moving test pattern at rtsp://127.0.0.1:PORT/test, prints ``ready`` once listening, and runs
until it is terminated (SIGTERM/SIGINT) or killed.
"""

from __future__ import annotations

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def pipeline(width: int, height: int, fps: int) -> str:
    """Return the launch line of the served stream: a live test pattern, H.264 (zero latency), RTP."""
    return (f"( videotestsrc is-live=true pattern=ball background-color=0xff406040 ! "
            f"video/x-raw,width={width},height={height},framerate={fps}/1 ! videoconvert ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )")


def main() -> None:
    port = int(sys.argv[1])
    width, height = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "1280x720").split("x"))
    fps = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline(width, height, fps))
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
