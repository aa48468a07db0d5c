"""A real RTSP server for the outage tests (``adplg watch``, ``adplg serve``): GStreamer's gst-rtsp-server
(``tests/rtsp_server.py``) in a subprocess of the system Python, killed and restarted at will.

Needs Debian's ``python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good`` for the system ``python3``:
:func:`require_gst_rtsp_server` skips without them, except under CI (the environment variable ``CI`` set), where it
fails instead."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from shared_helpers import missing_real_part

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")
PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good"


def require_gst_rtsp_server() -> None:
    """Skip (fail under CI) when the system Python cannot import gst-rtsp-server."""
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('qtdemux') and Gst.ElementFactory.find('rtph264pay')")
    ok = os.path.exists(SYSTEM_PYTHON) and subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True,
                                                           timeout=60, check=False).returncode == 0
    if not ok:
        why = f"gst-rtsp-server for {SYSTEM_PYTHON} is missing (Debian: apt-get install {PACKAGES})"
        missing_real_part(why)



class RtspServer:
    """``tests/rtsp_server.py`` serving ``video`` on ``rtsp://127.0.0.1:PORT/cam``; :meth:`kill` it, :meth:`start`
    it again."""

    def __init__(self, video: Path, port: int):
        self.video, self.port, self.proc = video, port, None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(self.video), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", (line, self.proc.stderr.read() if self.proc.poll() is not None else "")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # a crash: no goodbye to the client
            self.proc.wait(10)
