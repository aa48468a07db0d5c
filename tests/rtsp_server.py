"""A local RTSP server for the outage tests: GStreamer's gst-rtsp-server serving one H.264 MP4 file at its own frame
rate on ``rtsp://127.0.0.1:PORT/cam`` (each client gets the file from its start). Runs under the system Python with
Debian's ``python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good`` (qtdemux, rtph264pay); prints ``ready``
once it listens. Usage: ``python3 rtsp_server.py VIDEO.mp4 PORT``."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - after gi.require_version, as gi requires

Gst.init(None)
video, port = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f'( filesrc location="{video}" ! qtdemux ! rtph264pay name=pay0 pt=96 '
                   'config-interval=1 )')
factory.set_shared(False)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
