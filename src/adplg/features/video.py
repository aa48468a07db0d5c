"""Video decoding into 16-frame snippets and the frame preprocessing shared by the feature extractors.

Decoding (PyAV; FFmpeg's own threading, or ``decode_threads`` threads) streams the video: ``iter_snippets`` holds
one snippet of ``snippet_frames`` decoded RGB frames at a time, never the whole video. Snippets are consecutive and
non-overlapping; a final partial snippet is dropped, so a video of ``F`` decodable frames gives ``T = F // 16``
snippets.

Times: the reader records every decoded frame's presentation time in seconds, ``(frame.pts - stream.start_time) *
stream.time_base`` (``frame.time`` where the stream has no time base), so a variable-frame-rate video or one whose
container counts frames that never decode keeps its real clock. Only when some frame has no timestamp (a raw
elementary stream), or the timestamps go backwards, is frame ``i`` put at ``i / fps`` (``time_source`` "frame index"
instead of "pts"). ``SnippetReader.snippet_times`` gives each complete snippet's start (its first frame) and end (the
next decoded frame; after the last decoded frame, that frame's duration, else ``1 / fps``).

Crop views (``crop_views``), the order of the published feature files::

    view 0      centre
    views 1..4  corners: top-left, top-right, bottom-left, bottom-right
    views 5..9  horizontal flips of views 0..4

``crops=1`` keeps view 0, ``crops=5`` views 0..4, ``crops=10`` all ten. XD-Violence names its five crops
``__0`` (centre) .. ``__4`` (corners), the same order; UCF-Crime's ten crops are ``<name>.npy`` (view 0) and
``<name>__1 .. __9``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adplg.conventions import CROP_COUNTS, SNIPPET_FRAMES
from adplg.data.extraction import TIME_FROM_FRAME_INDEX, TIME_FROM_PTS
from adplg.errors import AdplgError

__all__ = [
    "VideoInfo",
    "open_video",
    "probe_video",
    "frame_time_s",
    "SnippetReader",
    "SnippetTimes",
    "TIME_SOURCES",
    "snippet_bounds",
    "frame_count_mismatch",
    "iter_snippets",
    "resize_short_side",
    "crop_view",
    "crop_views",
    "CROP_ORDER",
]

log = logging.getLogger(__name__)

TIME_SOURCES = (TIME_FROM_PTS, TIME_FROM_FRAME_INDEX)
CROP_ORDER = (
    "0 centre, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right, 5..9 horizontal flips of 0..4"
)


@dataclass(frozen=True, kw_only=True)
class VideoInfo:
    """What the container says about a video. ``frames`` is the container's frame count (0 when unknown); the
    number of frames actually decoded can differ and is reported separately by the reader. ``duration_s`` is the
    video stream's duration in seconds, else the container's (0.0 when neither is known); ``duration_source`` says
    which ("stream", "container" or "" when unknown)."""

    path: Path
    fps: float
    frames: int
    width: int
    height: int
    duration_s: float = 0.0
    duration_source: str = ""


@dataclass(frozen=True, kw_only=True)
class SnippetTimes:
    """The clock of one video's complete snippets. ``start_s`` / ``end_s``: float64 ``[T]`` seconds from the stream's
    start (``end_s[t] >= start_s[t]``); ``source``: "pts" or "frame index" (see the module docstring);
    ``duration_s``: the stream's (else the container's) duration in seconds, never less than the end of the last
    decoded frame (``duration_source`` "stream", "container" or "decoded frames"). ``frame_start_s``: float64
    ``[F]``, every decoded frame's time on the same clock; ``time_base``: the stream's (None when unknown)."""

    start_s: np.ndarray
    end_s: np.ndarray
    source: str
    duration_s: float
    duration_source: str
    frame_start_s: np.ndarray | None = None
    time_base: Fraction | None = None


# ---------------------------------------------------------------------------------------------------------- decoding
def open_video(path: Path):
    """Open the video file ``path`` with PyAV: ``(container, its first video stream)``; the caller closes the
    container. Raises ``AdplgError`` naming the file when it is missing, a folder, not readable by PyAV/FFmpeg, or
    has no video stream."""
    import av  # optional dependency (adplg[video]); imported here so the rest of adplg works without it

    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.exists() else "not found"
        raise AdplgError(f"video {path}: {what} (expected an existing video file)")
    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - every reader failure is a property of the user's file
        raise AdplgError(f"video {path}: cannot be opened as a video (expected a file PyAV/FFmpeg can read): "
                         f"{type(exc).__name__}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise AdplgError(f"video {path}: no video stream (expected at least 1, got 0)")
    return container, container.streams.video[0]


def _stream_info(path: Path, stream, container=None) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration_s, duration_source = 0.0, ""
    if stream.duration and stream.time_base and stream.duration > 0:
        duration_s, duration_source = float(stream.duration * stream.time_base), "stream"
    elif container is not None and container.duration and container.duration > 0:
        duration_s, duration_source = container.duration / 1_000_000, "container"  # AV_TIME_BASE: microseconds
    return VideoInfo(path=Path(path), fps=fps, frames=int(stream.frames or 0), width=int(stream.codec_context.width),
                     height=int(stream.codec_context.height), duration_s=duration_s, duration_source=duration_source)


def probe_video(path: Path) -> VideoInfo:
    """Frame rate, container frame count, frame size and duration of the first video stream, without decoding."""
    container, stream = open_video(path)
    try:
        return _stream_info(path, stream, container)
    finally:
        container.close()


def frame_count_mismatch(container_frames: int, decoded: int) -> dict | None:
    """``{"container": N, "decoded": M}`` when the container's frame count ``N`` is known (> 0) and differs from the
    ``M`` frames decoded, else None. (An AVI with dropped frames, or a variable-frame-rate AVI, counts frames that
    never decode.)"""
    container_frames, decoded = int(container_frames or 0), int(decoded)
    if container_frames > 0 and container_frames != decoded:
        return {"container": container_frames, "decoded": decoded}
    return None


def snippet_bounds(frame_start_s, last_frame_end_s: float,
                   snippet_frames: int = SNIPPET_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """``(start_s [T], end_s [T])`` float64 seconds of the ``T = F // snippet_frames`` complete snippets.

    ``frame_start_s``: ``[F]`` seconds, every decoded frame's presentation time, in order; ``last_frame_end_s``: when
    the last decoded frame ends. A snippet starts at its first frame and ends where the next decoded frame starts (the
    first frame of the next snippet, or of the dropped partial snippet), or at ``last_frame_end_s`` when its last
    frame is the last decoded frame.
    """
    times = np.asarray(frame_start_s, np.float64).reshape(-1)
    count = times.shape[0] // snippet_frames
    ends = np.append(times[1:], float(last_frame_end_s))  # [F]: where each frame ends
    first = np.arange(count) * snippet_frames
    return times[first], ends[first + snippet_frames - 1]


class SnippetReader:
    """Iterable over the ``[snippet_frames, H, W, 3]`` uint8 RGB snippets of one video, in order.

    After (or during) iteration, ``frames_decoded`` counts every decoded frame, including those of the dropped final
    partial snippet. ``info`` is the container's ``VideoInfo``. After iteration, ``snippet_times()`` gives the
    snippets' presentation times. A file that cannot be opened or has no video stream raises ``AdplgError`` when
    iteration starts; a decoding failure part-way raises ``AdplgError`` too (no features are produced from a partly
    broken stream). ``decode_threads``: 0 lets FFmpeg thread the decoder (frame and slice threads, as many as it
    likes), ``n >= 1`` caps it at ``n`` threads (1: no decoder threads, for a process that already runs a thread
    pool per CPU, such as a Ray worker running PyTorch). The decoded frames are the same either way.
    """

    def __init__(self, path: Path, snippet_frames: int = SNIPPET_FRAMES, decode_threads: int = 0):
        if snippet_frames < 1:
            raise AdplgError(f"expected >= 1, got {snippet_frames}", parameter="snippet_frames")
        if isinstance(decode_threads, bool) or not isinstance(decode_threads, int) or decode_threads < 0:
            raise AdplgError(f"expected an integer >= 0, got {decode_threads!r}", parameter="decode_threads")
        self.path = Path(path)
        self.snippet_frames = int(snippet_frames)
        self.decode_threads = decode_threads
        self.frames_decoded = 0
        self.info: VideoInfo | None = None
        self._times: list[float | None] = []  # [F] seconds from the stream's start; None: the frame has no timestamp
        self._last_duration_s: float | None = None  # the last decoded frame's duration, when the container gives it
        self.time_base: Fraction | None = None  # the stream's, once iteration has started

    def __iter__(self) -> Iterator[np.ndarray]:
        container, stream = open_video(self.path)
        if self.decode_threads:
            stream.codec_context.thread_count = self.decode_threads
        stream.thread_type = "NONE" if self.decode_threads == 1 else "AUTO"
        self.info = _stream_info(self.path, stream, container)
        self.frames_decoded = 0
        self._times, self._last_duration_s = [], None
        time_base = self.time_base = stream.time_base
        start = stream.start_time  # in time_base units; None when the container does not set it
        buffer: list[np.ndarray] = []
        try:
            for frame in self._decode(container, stream):
                buffer.append(frame.to_ndarray(format="rgb24"))
                self._times.append(frame_time_s(frame, time_base, start))
                self._last_duration_s = _frame_duration_s(frame, time_base)
                self.frames_decoded += 1
                if len(buffer) == self.snippet_frames:
                    yield np.stack(buffer)
                    buffer = []
        finally:
            container.close()

    def _decode(self, container, stream):
        try:
            yield from container.decode(stream)
        except Exception as exc:  # noqa: BLE001 - FFmpeg errors are properties of the file
            raise AdplgError(f"video {self.path}: decoding failed after {self.frames_decoded} frames "
                             f"(expected a readable stream): {type(exc).__name__}: {exc}") from None

    def frame_times(self) -> tuple[np.ndarray, str] | None:
        """``(start_s [F] float64 seconds, source)`` of the frames decoded so far: the container's presentation times
        (source "pts") when every frame has one and they never go backwards, else ``i / fps`` ("frame index").
        None when neither is possible (no timestamps and no frame rate)."""
        times = self._times
        if times and all(t is not None for t in times):
            array = np.asarray(times, np.float64)
            if np.all(np.diff(array) >= 0):
                return array, TIME_FROM_PTS
            log.warning("video %s: presentation times go backwards; frame times are frame index / fps", self.path)
        fps = self.info.fps if self.info is not None else 0.0
        if fps > 0:
            return np.arange(len(times), dtype=np.float64) / fps, TIME_FROM_FRAME_INDEX
        return None

    def snippet_times(self) -> SnippetTimes | None:
        """The complete snippets' times (``SnippetTimes``, ``[T]`` seconds) after iteration; None when the video has
        neither timestamps nor a frame rate, or nothing was decoded."""
        found = self.frame_times()
        if found is None or not len(found[0]):
            return None
        times, source = found
        fps = self.info.fps if self.info is not None else 0.0
        if source == TIME_FROM_PTS and self._last_duration_s:
            step = self._last_duration_s
        elif fps > 0:
            step = 1.0 / fps
        else:  # pts but no frame rate and no frame duration: the typical gap
            step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        last_end = float(times[-1]) + step
        start_s, end_s = snippet_bounds(times, last_end, self.snippet_frames)
        duration_s, duration_source = last_end, "decoded frames"
        if self.info is not None and self.info.duration_s >= last_end:
            duration_s, duration_source = self.info.duration_s, self.info.duration_source
        return SnippetTimes(start_s=start_s, end_s=end_s, source=source, duration_s=duration_s,
                            duration_source=duration_source, frame_start_s=times, time_base=self.time_base)


def frame_time_s(frame, time_base: Fraction | None, start: int | None) -> float | None:
    """Presentation time in seconds of a decoded PyAV ``frame``, counted from the stream's start: ``(frame.pts -
    start) * time_base`` (``start``: the stream's ``start_time`` in ``time_base`` units, None read as 0), else
    ``frame.time`` minus the start; None when the frame has no timestamp."""
    if frame.pts is not None and time_base:
        return float((frame.pts - (start or 0)) * time_base)
    seconds = frame.time  # pts in the frame's own time base; None without a pts
    if seconds is None:
        return None
    offset = float(start * time_base) if start and time_base else 0.0
    return float(seconds) - offset


def _frame_duration_s(frame, time_base: Fraction | None) -> float | None:
    """A decoded frame's duration in seconds, or None when the container does not give it."""
    duration = getattr(frame, "duration", None)  # PyAV >= 13
    base = getattr(frame, "time_base", None) or time_base
    if not duration or not base or duration <= 0:
        return None
    return float(duration * base)


def iter_snippets(path: Path, snippet_frames: int = SNIPPET_FRAMES) -> Iterator[np.ndarray]:
    """Yield the complete ``[snippet_frames, H, W, 3]`` uint8 RGB snippets of ``path`` in order
    (see ``SnippetReader``)."""
    return iter(SnippetReader(path, snippet_frames))


# ----------------------------------------------------------------------------------------------------- preprocessing
def _short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(H', W') with the short side equal to ``size`` and the aspect ratio kept (long side rounded)."""
    if height <= width:
        return size, max(size, int(round(width * size / height)))
    return max(size, int(round(height * size / width))), size


def resize_short_side(frames, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize so that the short side is ``size``, keeping the aspect ratio.

    ``frames``: uint8 ``[N, H, W, 3]`` (numpy array or tensor, RGB). Returns float32 ``[N, 3, H', W']`` in
    ``[0, 255]``: ``F.interpolate(..., mode, antialias=True)`` (``mode`` "bilinear" or "bicubic"), clamped to
    ``[0, 255]`` because bicubic overshoots and image libraries store the result as uint8 again.
    """
    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise AdplgError(f"resize_short_side: expected frames [N, H, W, 3], got shape {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float()
    out_hw = _short_side_size(x.shape[2], x.shape[3], size)
    if out_hw == tuple(x.shape[2:]):
        return x.contiguous()
    x = F.interpolate(x, size=out_hw, mode=mode, align_corners=False, antialias=True)
    return x.clamp_(0.0, 255.0)


def _crop_origin(height: int, width: int, size: int, corner: int) -> tuple[int, int]:
    """(top, left) of crop ``corner`` (0 centre, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right)."""
    if corner == 0:
        return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    top = 0 if corner in (1, 2) else height - size
    left = 0 if corner in (1, 3) else width - size
    return top, left


def crop_view(x: torch.Tensor, size: int, view: int) -> torch.Tensor:
    """View ``view`` (0..9, see the module docstring) of ``x`` ``[N, C, H, W]`` -> ``[N, C, size, size]``."""
    height, width = x.shape[-2:]
    if height < size or width < size:
        raise AdplgError(f"crop_view: expected frames of at least {size}x{size}, got {height}x{width}")
    if not 0 <= view < 10:
        raise AdplgError(f"crop_view: expected a view in 0..9, got {view}")
    top, left = _crop_origin(height, width, size, view % 5)
    out = x[..., top:top + size, left:left + size]
    return out.flip(-1) if view >= 5 else out


def crop_views(x: torch.Tensor, size: int, crops: int) -> torch.Tensor:
    """The first ``crops`` views (1, 5 or 10) of ``x`` ``[N, C, H, W]`` -> ``[crops, N, C, size, size]``."""
    if crops not in CROP_COUNTS:
        raise AdplgError(f"expected one of {', '.join(map(str, CROP_COUNTS))}, got {crops}", parameter="crops")
    return torch.stack([crop_view(x, size, v) for v in range(crops)])
