"""Feature extractors: a backbone plus its preprocessing, uint8 video snippets in, ``[B, crops, D]`` features out.

Backbones (``EXTRACTORS``, by the names of ``adplg.conventions.BACKBONES``)
    ``i3d``: the Kinetics-pretrained RGB InceptionI3d (``rgb_imagenet.pt`` layout). Frames are resized to a short side
    of 256 (bilinear, antialiased), cropped to 224 and scaled to ``[-1, 1]`` (``x / 255 * 2 - 1``); one forward of a
    ``[B, 3, 16, 224, 224]`` clip gives ``[B, 1024]``.
    ``clip``: the CLIP image tower (OpenAI layout, ViT-B/16: 224 px, 512-d). Frames are resized to a short side of
    ``image_size`` (bicubic, antialiased) for one crop, or of ``round(image_size * 256 / 224)`` when cutting 5 or 10
    crops of ``image_size``; then ``x / 255`` normalised by the CLIP mean/std. One feature per snippet:
    ``clip_frame="middle"`` encodes frame 8 (0-based) of the 16, ``clip_frame="mean"`` averages the embeddings of
    all 16 frames. VadCLIP does not document how its published CLIP features sample frames; these two rules are our
    choice, and the extraction manifest records which one made a folder.

Crop views (``adplg.features.video``): 0 centre, 1..4 corners (top-left, top-right, bottom-left, bottom-right),
5..9 horizontal flips of 0..4.

:func:`build_extractor` loads a backbone by name; :func:`extractor_for_model` picks and checks the backbone whose
features a trained model takes (``adplg score`` of videos, ``adplg watch``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from adplg.conventions import (
    BACKBONES,
    CLIP_FRAME_MODES,
    CROP_COUNTS,
    DEFAULT_CROPS,
    SNIPPET_FRAMES,
    backbone_for_dim,
)
from adplg.errors import AdplgError
from adplg.features.video import CROP_ORDER, SnippetReader, VideoInfo, crop_view, resize_short_side
from adplg.io import file_sha256

if TYPE_CHECKING:
    from adplg.models.backbones.i3d import InceptionI3d

__all__ = [
    "FeatureExtractor",
    "I3DExtractor",
    "CLIPExtractor",
    "EXTRACTORS",
    "build_extractor",
    "check_extractor_settings",
    "extractor_for_model",
]

_I3D_RESIZE, _I3D_CROP = 256, 224


def check_extractor_settings(crops: int, batch_snippets: int) -> None:
    """``crops`` is one of ``CROP_COUNTS`` and ``batch_snippets`` an integer >= 1; :class:`AdplgError` otherwise."""
    if crops not in CROP_COUNTS:
        raise AdplgError(f"expected one of {', '.join(map(str, CROP_COUNTS))}, got {crops!r}", parameter="crops")
    if isinstance(batch_snippets, bool) or not isinstance(batch_snippets, int) or batch_snippets < 1:
        raise AdplgError(f"expected an integer >= 1, got {batch_snippets!r}", parameter="batch_snippets")


def _check_backbone(backbone: str) -> None:
    if backbone not in EXTRACTORS:
        raise AdplgError(f"expected one of {', '.join(EXTRACTORS)}, got {backbone!r}", parameter="backbone")


def _check_clip_frame(clip_frame: str) -> None:
    if clip_frame not in CLIP_FRAME_MODES:
        raise AdplgError(f"expected one of {', '.join(CLIP_FRAME_MODES)}, got {clip_frame!r}",
                         parameter="clip_frame")


class FeatureExtractor:
    """A backbone plus its preprocessing: uint8 snippets in, ``[B, crops, D]`` float32 features out.

    Subclasses set ``backbone``, ``feature_dim``, ``resize_short``, ``resize_mode``, ``crop_size``,
    ``normalisation``, implement ``_encode_view`` and :meth:`load` (the backbone's weights -> its extractor).
    """

    backbone = ""
    normalisation = ""

    def __init__(self, model: torch.nn.Module, weights: Path, crops: int, device: torch.device, batch_snippets: int):
        check_extractor_settings(crops, batch_snippets)
        self.model = model.eval().to(device)
        self.weights = Path(weights)
        self.crops = int(crops)
        self.device = torch.device(device)
        self.batch_snippets = int(batch_snippets)
        self.model_dtype = next(self.model.parameters()).dtype
        self.decode_threads = 0  # PyAV decoder threads: 0 = FFmpeg's choice (see SnippetReader)
        self._weights_sha256: str | None = None
        self.feature_dim = 0
        self.resize_short = 0
        self.resize_mode = "bilinear"
        self.crop_size = 0

    # ---- the per-backbone part
    def _select_frames(self, snippets: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, SNIPPET_FRAMES, H, W, 3]`` -> the frames this backbone looks at, ``[B, K, H, W, 3]``."""
        return snippets

    def _encode_view(self, view: torch.Tensor, batch: int) -> torch.Tensor:
        """One crop view ``[B * K, 3, S, S]`` float in ``[0, 255]`` -> ``[B, D]`` float32."""
        raise NotImplementedError

    def clip_frame_setting(self) -> str | None:
        """The CLIP frame mode (``CLIP_FRAME_MODES``) of a CLIP extractor; None for other backbones."""
        return None

    @classmethod
    def load(cls, weights: Path, crops: int, device: torch.device, batch_snippets: int,
             clip_frame: str) -> FeatureExtractor:
        """Load the backbone from ``weights`` and return its extractor (``clip_frame``: used by CLIP only)."""
        raise NotImplementedError

    # ---- shared
    @property
    def weights_sha256(self) -> str:
        """The sha256 of the backbone's weights file (computed once, on first use)."""
        if self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights)
        return self._weights_sha256

    def encode_snippets(self, snippets: Sequence[np.ndarray]) -> np.ndarray:
        """``B`` uint8 snippets ``[SNIPPET_FRAMES, H, W, 3]`` -> float32 ``[B, crops, D]``."""
        return self.encode_views(self.views(snippets), len(snippets))

    def views(self, snippets: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """The backbone's input of ``B`` uint8 snippets ``[SNIPPET_FRAMES, H, W, 3]`` (one frame size): one tensor
        per crop view, ``[B * K, 3, S, S]`` float in ``[0, 255]`` on the device (``K`` frames per snippet the backbone
        looks at, ``S`` the crop size). Views of snippets of different sizes concatenate (``torch.cat`` per crop) into
        one batch for :meth:`encode_views`: the camera service batches several cameras this way."""
        frames = self._select_frames(torch.as_tensor(np.stack(snippets))).to(self.device)  # uint8 to the device
        resized = resize_short_side(frames.reshape(-1, *frames.shape[2:]), self.resize_short, self.resize_mode)
        return [crop_view(resized, self.crop_size, v) for v in range(self.crops)]

    def encode_views(self, views: Sequence[torch.Tensor], batch: int) -> np.ndarray:
        """The features of ``batch`` snippets from their :meth:`views` -> float32 ``[batch, crops, D]``."""
        return torch.stack([self._encode_view(view, batch) for view in views], dim=1).float().cpu().numpy()

    def encode_video(self, path: Path,
                     progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, SnippetReader]:
        """Features of every complete snippet of ``path``: (float32 ``[T, crops, D]``, the finished reader, which
        holds ``info``, ``frames_decoded`` and ``snippet_times()``). ``progress(n)`` is called after each batch with
        the number ``n`` of snippets just encoded. Raises ``AdplgError`` for an unreadable file or fewer than
        ``SNIPPET_FRAMES`` decodable frames."""
        reader = SnippetReader(path, SNIPPET_FRAMES, self.decode_threads)
        chunks: list[np.ndarray] = []
        pending: list[np.ndarray] = []

        def flush() -> None:
            chunks.append(self.encode_snippets(pending))
            if progress is not None:
                progress(len(pending))
            pending.clear()

        with torch.inference_mode():
            for snippet in reader:
                pending.append(snippet)
                if len(pending) == self.batch_snippets:
                    flush()
            if pending:
                flush()
        if not chunks:
            raise AdplgError(f"video {path}: too short: expected at least {SNIPPET_FRAMES} decodable frames, "
                             f"got {reader.frames_decoded}")
        return np.concatenate(chunks).astype(np.float32, copy=False), reader

    def video_features(self, path: Path,
                       progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, VideoInfo, int]:
        """Features of every complete snippet of ``path``: (float32 ``[T, crops, D]``, container info, frames
        decoded). ``progress(n)`` is called after each encoded batch of ``n`` snippets. Raises ``AdplgError`` for an
        unreadable file or fewer than ``SNIPPET_FRAMES`` decodable frames."""
        features, reader = self.encode_video(path, progress)
        assert reader.info is not None  # set when the iteration opened the video
        return features, reader.info, reader.frames_decoded

    def settings(self) -> dict:
        """Everything that defines the features (the run manifest's extraction part)."""
        return {
            "backbone": self.backbone,
            "weights": str(self.weights.resolve()),
            "weights_sha256": self.weights_sha256,
            "feature_dim": self.feature_dim,
            "crops": self.crops,
            "crop_order": CROP_ORDER,
            "resize_short_side": self.resize_short,
            "resize_mode": f"{self.resize_mode}, antialiased",
            "crop_size": self.crop_size,
            "snippet_frames": SNIPPET_FRAMES,
            "snippet_layout": f"consecutive non-overlapping {SNIPPET_FRAMES}-frame snippets, "
                              "final partial snippet dropped",
            "normalisation": self.normalisation,
            "clip_frame": self.clip_frame_setting(),
            "dtype": "float32",
        }

    def build_args(self) -> dict:
        """The :func:`build_extractor` keyword arguments (all but ``device``) that rebuild this extractor elsewhere,
        e.g. in a Ray worker: JSON-serialisable, the weights as an absolute path."""
        return {"backbone": self.backbone, "weights": str(self.weights.resolve()), "crops": self.crops,
                "batch_snippets": self.batch_snippets, "clip_frame": self.clip_frame_setting() or "middle"}


class I3DExtractor(FeatureExtractor):
    """RGB I3D: 16 frames, short side 256 (bilinear), 224 crops, ``[-1, 1]`` input, 1024-d features."""

    backbone = "i3d"
    normalisation = "x / 255 * 2 - 1 (RGB in [-1, 1])"
    model: InceptionI3d

    def __init__(self, model, weights, crops, device, batch_snippets):
        super().__init__(model, weights, crops, device, batch_snippets)
        self.feature_dim = BACKBONES["i3d"]
        self.resize_short, self.resize_mode, self.crop_size = _I3D_RESIZE, "bilinear", _I3D_CROP

    @classmethod
    def load(cls, weights, crops, device, batch_snippets, clip_frame) -> I3DExtractor:
        """The I3D extractor of the pytorch-i3d weights file ``weights`` (``clip_frame`` is unused)."""
        from adplg.models.backbones.i3d import load_i3d

        return cls(load_i3d(weights), weights, crops, device, batch_snippets)

    def _encode_view(self, view: torch.Tensor, batch: int) -> torch.Tensor:
        clip = view.reshape(batch, SNIPPET_FRAMES, *view.shape[1:]).permute(0, 2, 1, 3, 4)  # [B, 3, 16, S, S]
        clip = clip.to(self.model_dtype) / 255.0 * 2.0 - 1.0
        return self.model.features(clip).float()


class CLIPExtractor(FeatureExtractor):
    """CLIP image tower: one embedding per snippet from its middle frame, or the mean over its 16 frames."""

    backbone = "clip"

    def __init__(self, model, weights, crops, device, batch_snippets, clip_frame: str = "middle"):
        from adplg.models.backbones.clip import CLIP_MEAN, CLIP_STD

        _check_clip_frame(clip_frame)
        super().__init__(model, weights, crops, device, batch_snippets)
        self.clip_frame = clip_frame
        self.feature_dim = int(model.feature_dim)
        size = int(model.image_size)
        self.resize_short = size if crops == 1 else int(round(size * 256 / 224))
        self.resize_mode, self.crop_size = "bicubic", size
        self.normalisation = f"x / 255, then (x - {list(CLIP_MEAN)}) / {list(CLIP_STD)}"
        self._mean = torch.tensor(CLIP_MEAN, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(CLIP_STD, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0

    @classmethod
    def load(cls, weights, crops, device, batch_snippets, clip_frame) -> CLIPExtractor:
        """The CLIP extractor of the weights at ``weights`` (an OpenAI checkpoint or a Hugging Face folder)."""
        from adplg.models.backbones.clip import load_clip_vision

        return cls(load_clip_vision(weights), weights, crops, device, batch_snippets, clip_frame)

    def clip_frame_setting(self) -> str:
        """The frame mode: ``middle`` (the snippet's middle frame) or ``mean`` (of its 16 frames' embeddings)."""
        return self.clip_frame

    def _select_frames(self, snippets: torch.Tensor) -> torch.Tensor:
        if self.clip_frame == "middle":
            middle = SNIPPET_FRAMES // 2
            return snippets[:, middle:middle + 1]
        return snippets

    def _encode_view(self, view: torch.Tensor, batch: int) -> torch.Tensor:
        pixels = ((view - self._mean) / self._std).to(self.model_dtype)  # (x/255 - mean)/std, in one step
        embeddings = self.model(pixels).float()
        return embeddings.reshape(batch, -1, embeddings.shape[-1]).mean(dim=1)


# backbone name (adplg.conventions.BACKBONES) -> its extractor
EXTRACTORS: dict[str, type[FeatureExtractor]] = {"i3d": I3DExtractor, "clip": CLIPExtractor}


def build_extractor(backbone: str, weights: Path, crops: int, device="cpu", batch_snippets: int = 8,
                    clip_frame: str = "middle") -> FeatureExtractor:
    """Load the backbone weights and return its extractor (``device`` "cpu", "cuda", "cuda:N" or "auto"). Every
    setting is checked before the (slow) weights load; :class:`AdplgError` names the bad one."""
    _check_backbone(backbone)
    check_extractor_settings(crops, batch_snippets)
    _check_clip_frame(clip_frame)
    weights = Path(weights)
    if not weights.exists():
        raise AdplgError(f"weights {weights}: not found (expected the {backbone} weights file)")
    from adplg.runtime import resolve_device

    device = device if isinstance(device, torch.device) else resolve_device(str(device))
    return EXTRACTORS[backbone].load(weights, crops, device, batch_snippets, clip_frame)


def extractor_for_model(feature_dim: int, weights: str | Path | None, *, backbone: str | None = None,
                        crops: int | None = None, device="cpu", batch_snippets: int = 8,
                        video: str | Path = "a video input") -> FeatureExtractor:
    """The extractor that gives a model taking ``feature_dim``-d features its video inputs' features.

    ``backbone`` defaults to the one whose features have ``feature_dim`` dimensions (``BACKBONES``); ``crops`` (None
    or 0: the backbone's ``DEFAULT_CROPS``) and ``batch_snippets`` as :func:`build_extractor`. ``video`` names the
    input that needs the extractor in the error when ``weights`` is None. Raises :class:`AdplgError` when the weights
    are missing, no backbone gives ``feature_dim``-d features, or the loaded backbone's features are not
    ``feature_dim``-d."""
    if weights is None:
        raise AdplgError(f"needed for {video}: expected the backbone weights file (rgb_imagenet.pt for I3D, "
                         "ViT-B-16.pt for CLIP), got none", parameter="weights")
    backbone = backbone or backbone_for_dim(feature_dim)
    if backbone is None:
        known = ", ".join(f"{name} {dim}" for name, dim in BACKBONES.items())
        raise AdplgError(f"the model expects {feature_dim}-d features, which no backbone gives ({known}); name the "
                         "backbone to force one", parameter="backbone")
    _check_backbone(backbone)
    crops = crops or DEFAULT_CROPS[backbone]
    extractor = build_extractor(backbone, Path(weights), crops, device=device, batch_snippets=batch_snippets)
    if extractor.feature_dim != feature_dim:
        raise AdplgError(f"{weights}: the {backbone} backbone gives {extractor.feature_dim}-d features, but the model "
                         f"expects {feature_dim}-d")
    return extractor
