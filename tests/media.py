"""Small synthetic videos written with PyAV for the extraction and scoring tests."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: int, width: int = 64, height: int = 48, fps: int = 25, seed: int = 0) -> Path:
    """An mpeg4 clip: a colour gradient (so crop views differ) with a square moving one pixel per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1)
    colour = rng.integers(0, 256, 3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = background.astype(np.uint8)
            x0 = (3 * i) % (width - 12)
            image[8:20, x0:x0 + 12] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_timed_video(path: Path, pts_ms: Sequence[int], width: int = 64, height: int = 48, rate: int = 25,
                      codec: str = "mpeg4", seed: int = 0, gop: int | None = None) -> Path:
    """A clip whose frame ``i`` is presented at ``pts_ms[i]`` milliseconds (time base 1/1000; the container is chosen
    by the suffix: .mp4, .mkv, .avi, or .h264 for a raw stream without timestamps). ``rate`` is the nominal frame
    rate the stream declares (muxers take a frame's duration from it when they need one); ``gop``: at most that many
    frames between key frames (the codec's default otherwise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1)
    colour = rng.integers(0, 256, 3)
    ms = Fraction(1, 1000)
    fmt = "h264" if Path(path).suffix == ".h264" else None
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = ms
        stream.time_base = ms
        if gop is not None:
            stream.codec_context.gop_size = gop
        for i, pts in enumerate(pts_ms):
            image = background.astype(np.uint8)
            x0 = (3 * i) % (width - 12)
            image[8:20, x0:x0 + 12] = colour
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(pts), ms
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
