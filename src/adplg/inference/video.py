"""Video decoding into 16-frame snippets and the frame preprocessing shared by the feature extractors.

Decoding (PyAV, frame threading on) streams the video: ``iter_snippets`` holds one snippet of ``snippet_frames``
decoded RGB frames at a time, never the whole video. Snippets are consecutive and non-overlapping; a final partial
snippet is dropped, so a video of ``F`` decodable frames gives ``T = F // 16`` snippets.

Crop views (``crop_views``), the order of the published feature files::

    view 0      centre
    views 1..4  corners: top-left, top-right, bottom-left, bottom-right
    views 5..9  horizontal flips of views 0..4

``crops=1`` keeps view 0, ``crops=5`` views 0..4, ``crops=10`` all ten. XD-Violence names its five crops
``__0`` (centre) .. ``__4`` (corners), the same order; UCF-Crime's ten crops are ``<name>.npy`` (view 0) and
``<name>__1 .. __9``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adplg.errors import AdplgError

__all__ = [
    "VideoInfo",
    "probe_video",
    "SnippetReader",
    "iter_snippets",
    "resize_short_side",
    "crop_view",
    "crop_views",
    "CROP_COUNTS",
    "CROP_ORDER",
]

CROP_COUNTS = (1, 5, 10)
CROP_ORDER = (
    "0 centre, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right, 5..9 horizontal flips of 0..4"
)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video. ``frames`` is the container's frame count (0 when unknown); the
    number of frames actually decoded can differ and is reported separately by the reader."""

    path: Path
    fps: float
    frames: int
    width: int
    height: int


# ---------------------------------------------------------------------------------------------------------- decoding
def _open(path: Path):
    """Open ``path`` with PyAV and return ``(container, first video stream)``; clear errors for every failure."""
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


def _stream_info(path: Path, stream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    return VideoInfo(path=Path(path), fps=fps, frames=int(stream.frames or 0), width=int(stream.codec_context.width),
                     height=int(stream.codec_context.height))


def probe_video(path: Path) -> VideoInfo:
    """Frame rate, container frame count and frame size of the first video stream, without decoding."""
    container, stream = _open(path)
    try:
        return _stream_info(path, stream)
    finally:
        container.close()


class SnippetReader:
    """Iterable over the ``[snippet_frames, H, W, 3]`` uint8 RGB snippets of one video, in order.

    After (or during) iteration, ``frames_decoded`` counts every decoded frame, including those of the dropped final
    partial snippet. ``info`` is the container's ``VideoInfo``. A file that cannot be opened or has no video stream
    raises ``AdplgError`` when iteration starts; a decoding failure part-way raises ``AdplgError`` too (no features
    are produced from a partly broken stream).
    """

    def __init__(self, path: Path, snippet_frames: int = 16):
        if snippet_frames < 1:
            raise AdplgError(f"snippet_frames: expected >= 1, got {snippet_frames}")
        self.path = Path(path)
        self.snippet_frames = int(snippet_frames)
        self.frames_decoded = 0
        self.info: VideoInfo | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        container, stream = _open(self.path)
        stream.thread_type = "AUTO"
        self.info = _stream_info(self.path, stream)
        self.frames_decoded = 0
        buffer: list[np.ndarray] = []
        try:
            for frame in self._decode(container, stream):
                buffer.append(frame.to_ndarray(format="rgb24"))
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


def iter_snippets(path: Path, snippet_frames: int = 16) -> Iterator[np.ndarray]:
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
        raise AdplgError(f"crops: expected one of {', '.join(map(str, CROP_COUNTS))}, got {crops}")
    return torch.stack([crop_view(x, size, v) for v in range(crops)])
