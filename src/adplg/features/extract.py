"""``adplg extract``: snippet features from raw videos, in the layout of the published I3D / CLIP feature files.

Every video is cut into consecutive, non-overlapping 16-frame snippets (a final partial snippet is dropped; fewer
than 16 decodable frames is an error for that video). Each snippet gives one feature per crop view, and every crop
is written as its own ``[T, D]`` float32 ``.npy`` file.

Backbones
    ``i3d``: the Kinetics-pretrained RGB InceptionI3d (``rgb_imagenet.pt`` layout). Frames are resized to a short side
    of 256 (bilinear, antialiased), cropped to 224 and scaled to ``[-1, 1]`` (``x / 255 * 2 - 1``); one forward of a
    ``[B, 3, 16, 224, 224]`` clip gives ``[B, 1024]``.
    ``clip``: the CLIP image tower (OpenAI layout, ViT-B/16: 224 px, 512-d). Frames are resized to a short side of
    ``image_size`` (bicubic, antialiased) for one crop, or of ``round(image_size * 256 / 224)`` when cutting 5 or 10
    crops of ``image_size``; then ``x / 255`` normalised by the CLIP mean/std. One feature per snippet:
    ``clip_frame="middle"`` encodes frame 8 (0-based) of the 16, ``clip_frame="mean"`` averages the embeddings of
    all 16 frames. VadCLIP does not document how its published CLIP features sample frames; these two rules are our
    choice, and the manifest records which one made a folder.

Crop views (``adplg.features.video``): 0 centre, 1..4 corners (top-left, top-right, bottom-left, bottom-right),
5..9 horizontal flips of 0..4.

Output folder (``naming``)
    ``ucf``: crop 0 -> ``<name>.npy``, crop k >= 1 -> ``<name>__k.npy`` (the UCF-Crime 10-crop files);
    ``xd``: ``<name>__k.npy`` for every k (XD-Violence, 5 crops); ``sht``: ``<name>_k.npy`` (ShanghaiTech).
    ``meta/<name>.json`` is written after all crop files of a video and marks it as done: a re-run skips a video whose
    record holds this run's ``settings_fingerprint`` (:func:`settings_fingerprint`: the sha256 of the settings that
    change the features and of ``FEATURE_FORMAT_VERSION``) and whose crop files all exist. Besides
    ``fps`` and the frame counts it holds the snippets' presentation times from the container: ``snippet_start_s`` /
    ``snippet_end_s`` (``[T]`` seconds from the stream's start, 6 decimals; a snippet ends where the next decoded frame
    starts), ``time_source`` ("pts", or "frame index" when the container has no timestamps and ``i / fps`` was used),
    ``duration_s`` (the stream's or container's duration in seconds, never less than the end of the last decoded
    frame) and, when the container's frame count differs from the frames decoded (a warning is logged),
    ``frame_count_mismatch: {"container": N, "decoded": M}``.
    ``manifest.json`` holds the extraction settings and versions; a re-run with a setting that changes the features
    stops with an error instead of mixing features. A folder without our ``manifest.json`` that already holds
    ``.npy`` files (or ``features.list``, ``meta/*.json``) is refused: foreign files are never overwritten.
    ``features.list`` (one absolute crop path per line, readable by ``adplg.data.lists.read_list(path, naming)``) is
    regenerated from all finished videos at the end of every run.
    Every file is written to a temporary name and renamed, so a crash never leaves a half-written file.

Sharding: with ``shard=(i, n)`` a process extracts ``videos[i::n]`` of the inputs sorted by video name; several
processes (or machines sharing the folder) can fill one output folder. Each process rewrites ``features.list`` when it
ends, from every video finished by then, so the last process to end writes the complete list (a final run with
``shard=(0, 1)`` skips every finished video and rewrites it too).

Engines: a run is three steps, the same for every engine: :func:`plan_extraction` (list the videos, check or write the
folder's manifest, skip the finished videos), the work, :func:`extract_video` (one video -> its files and a small
record dict), run in this process or on a Ray cluster (``engine=RayEngine(...)``, :mod:`adplg.engines`:
each worker builds the extractor once from :meth:`FeatureExtractor.build_args` and decodes with one thread), and
:func:`finish_extraction` (the report, ``features.list``). The folder's files are the same whichever engine ran.
"""

from __future__ import annotations

import csv
import functools
import glob
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adplg.conventions import BACKBONES, DEFAULT_CROPS, NAMINGS, SNIPPET_FRAMES, crop_file_names
from adplg.errors import AdplgError
from adplg.features.video import (
    CROP_COUNTS,
    CROP_ORDER,
    SnippetReader,
    VideoInfo,
    crop_view,
    frame_count_mismatch,
    probe_video,
    resize_short_side,
)
from adplg.io import atomic_write_bytes, atomic_write_text, check_output_dir, file_sha256

__all__ = [
    "BACKBONES",
    "NAMINGS",
    "CLIP_FRAME_MODES",
    "DEFAULT_CROPS",
    "VIDEO_EXTENSIONS",
    "LIST_EXTENSIONS",
    "FEATURE_KEYS",
    "SNIPPET_FRAMES",
    "FeatureExtractor",
    "I3DExtractor",
    "CLIPExtractor",
    "ExtractReport",
    "ExtractPlan",
    "ExtractionProgress",
    "FEATURE_FORMAT_VERSION",
    "build_extractor",
    "check_extract_folder",
    "crop_file_names",
    "collect_videos",
    "extract_many",
    "extract_video",
    "finish_extraction",
    "is_finished",
    "plan_extraction",
    "settings_fingerprint",
    "write_feature_list",
]

log = logging.getLogger(__name__)

CLIP_FRAME_MODES = ("middle", "mean")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ts")
LIST_EXTENSIONS = (".txt", ".list", ".csv")
# manifest keys whose change changes the features: a folder never mixes two values of any of them
FEATURE_KEYS = ("backbone", "weights_sha256", "crops", "resize_short_side", "resize_mode", "crop_size",
                "snippet_frames", "normalisation", "clip_frame", "naming")
_I3D_RESIZE, _I3D_CROP = 256, 224
# the layout and meaning of the feature files and meta records; part of every video's settings fingerprint, so a
# change here makes re-runs redo the videos extracted before it
FEATURE_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------------- extractors
def check_extractor_settings(crops: int, batch_snippets: int) -> None:
    """``--crops`` is one of ``CROP_COUNTS`` and ``--batch-snippets`` an integer >= 1."""
    if crops not in CROP_COUNTS:
        raise AdplgError(f"--crops: expected one of {', '.join(map(str, CROP_COUNTS))}, got {crops}")
    if isinstance(batch_snippets, bool) or not isinstance(batch_snippets, int) or batch_snippets < 1:
        raise AdplgError(f"--batch-snippets: expected an integer >= 1, got {batch_snippets!r}")


class FeatureExtractor:
    """A backbone plus its preprocessing: uint8 snippets in, ``[B, crops, D]`` float32 features out.

    Subclasses set ``backbone``, ``feature_dim``, ``resize_short``, ``resize_mode``, ``crop_size``,
    ``normalisation`` and implement ``_encode_view``.
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
        return None

    # ---- shared
    @property
    def weights_sha256(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights)
        return self._weights_sha256

    def encode_snippets(self, snippets: Sequence[np.ndarray]) -> np.ndarray:
        """``B`` uint8 snippets ``[SNIPPET_FRAMES, H, W, 3]`` -> float32 ``[B, crops, D]``."""
        batch = len(snippets)
        frames = self._select_frames(torch.as_tensor(np.stack(snippets))).to(self.device)  # uint8 to the device
        resized = resize_short_side(frames.reshape(-1, *frames.shape[2:]), self.resize_short, self.resize_mode)
        views = [self._encode_view(crop_view(resized, self.crop_size, v), batch) for v in range(self.crops)]
        return torch.stack(views, dim=1).float().cpu().numpy()

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

    def __init__(self, model, weights, crops, device, batch_snippets):
        super().__init__(model, weights, crops, device, batch_snippets)
        self.feature_dim = 1024
        self.resize_short, self.resize_mode, self.crop_size = _I3D_RESIZE, "bilinear", _I3D_CROP

    def _encode_view(self, view: torch.Tensor, batch: int) -> torch.Tensor:
        clip = view.reshape(batch, SNIPPET_FRAMES, *view.shape[1:]).permute(0, 2, 1, 3, 4)  # [B, 3, 16, S, S]
        clip = clip.to(self.model_dtype) / 255.0 * 2.0 - 1.0
        return self.model.features(clip).float()


class CLIPExtractor(FeatureExtractor):
    """CLIP image tower: one embedding per snippet from its middle frame, or the mean over its 16 frames."""

    backbone = "clip"

    def __init__(self, model, weights, crops, device, batch_snippets, clip_frame: str = "middle"):
        from adplg.models.backbones.clip import CLIP_MEAN, CLIP_STD

        if clip_frame not in CLIP_FRAME_MODES:
            raise AdplgError(f"clip_frame: expected one of {', '.join(CLIP_FRAME_MODES)}, got {clip_frame!r}")
        super().__init__(model, weights, crops, device, batch_snippets)
        self.clip_frame = clip_frame
        self.feature_dim = int(model.feature_dim)
        size = int(model.image_size)
        self.resize_short = size if crops == 1 else int(round(size * 256 / 224))
        self.resize_mode, self.crop_size = "bicubic", size
        self.normalisation = f"x / 255, then (x - {list(CLIP_MEAN)}) / {list(CLIP_STD)}"
        self._mean = torch.tensor(CLIP_MEAN, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(CLIP_STD, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0

    def clip_frame_setting(self) -> str:
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


def build_extractor(backbone: str, weights: Path, crops: int, device="cpu", batch_snippets: int = 8,
                    clip_frame: str = "middle") -> FeatureExtractor:
    """Load the backbone weights and return its extractor (``device`` "cpu", "cuda", "cuda:N" or "auto")."""
    if backbone not in BACKBONES:
        raise AdplgError(f"--backbone: expected one of {', '.join(BACKBONES)}, got {backbone!r}")
    check_extractor_settings(crops, batch_snippets)  # before the (slow) weights load
    if clip_frame not in CLIP_FRAME_MODES:
        raise AdplgError(f"--clip-frame: expected one of {', '.join(CLIP_FRAME_MODES)}, got {clip_frame!r}")
    weights = Path(weights)
    if not weights.exists():
        raise AdplgError(f"weights {weights}: not found (expected the {backbone} weights file)")
    from adplg.runtime import resolve_device

    device = device if isinstance(device, torch.device) else resolve_device(str(device))
    if backbone == "i3d":
        from adplg.models.backbones.i3d import load_i3d

        return I3DExtractor(load_i3d(weights), weights, crops, device, batch_snippets)
    from adplg.models.backbones.clip import load_clip_vision

    return CLIPExtractor(load_clip_vision(weights), weights, crops, device, batch_snippets, clip_frame)


# ------------------------------------------------------------------------------------------------------------ layout
def _meta_path(out_dir: Path, name: str) -> Path:
    return out_dir / "meta" / f"{name}.json"


def settings_fingerprint(manifest: dict) -> str:
    """Hex sha256 of what makes a video's feature files: the run manifest's ``FEATURE_KEYS`` and ``feature_dim``, and
    ``FEATURE_FORMAT_VERSION``. Stored in every ``meta/<name>.json``; a video counts as finished only under the same
    fingerprint."""
    settings = {key: manifest.get(key) for key in (*FEATURE_KEYS, "feature_dim")}
    settings["feature_format"] = FEATURE_FORMAT_VERSION
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def is_finished(out_dir: Path, name: str, crop_files: list[str], fingerprint: str) -> bool:
    """The meta record of ``name`` holds ``fingerprint`` and every crop file exists."""
    try:
        record = json.loads(_meta_path(out_dir, name).read_text())
    except (OSError, ValueError):  # missing, or unreadable: extract the video again
        return False
    return (isinstance(record, dict) and record.get("settings_fingerprint") == fingerprint
            and all((out_dir / f).is_file() for f in crop_files))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def write_feature_list(out_dir: Path) -> Path | None:
    """Rewrite ``<out_dir>/features.list`` from every finished video (``meta/*.json`` whose crop files all exist):
    one absolute crop path per line, videos sorted by name, crops in order. Returns its path, or None when no video
    is finished yet."""
    out_dir = Path(out_dir).resolve()
    lines: list[str] = []
    for meta_file in sorted((out_dir / "meta").glob("*.json")):
        try:
            crop_files = json.loads(meta_file.read_text())["crop_files"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("skipping %s in features.list: unreadable meta record (%s)", meta_file, exc)
            continue
        paths = [out_dir / f for f in crop_files]
        if all(p.is_file() for p in paths):
            lines.extend(str(p) for p in paths)
    if not lines:
        return None
    if any(any(ch.isspace() for ch in ln) for ln in lines):
        log.warning("%s: some paths contain whitespace; the 'sht' list reader splits lines on whitespace", out_dir)
    target = out_dir / "features.list"
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


# ---------------------------------------------------------------------------------------------------------- manifest
def _run_manifest(extractor: FeatureExtractor, naming: str) -> dict:
    from adplg._version import __version__
    from adplg.runtime import versions

    return {**extractor.settings(), "naming": naming, "adplg": __version__, "versions": versions()}


def _read_manifest(path: Path) -> dict:
    """The manifest of an earlier run in ``path.parent``; :class:`AdplgError` when it is unreadable or not ours."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AdplgError(f"{path}: cannot be read as JSON ({exc}); expected the manifest of an earlier run") from None
    if not isinstance(previous, dict) or previous.get("backbone") not in BACKBONES or "weights_sha256" not in previous:
        raise AdplgError(f"{path}: not a manifest written by `adplg extract` (expected its 'backbone' and "
                         f"'weights_sha256' keys); refusing to write into {path.parent}, nothing was overwritten: "
                         "pick an empty folder for --out")
    return previous


def _foreign_files(out_dir: Path) -> list[Path]:
    """Files of a folder without our manifest that an extraction could overwrite: ``*.npy``, ``features.list``,
    ``meta/*.json``."""
    if not out_dir.is_dir():
        return []
    found = sorted(out_dir.glob("*.npy"))
    found += [out_dir / "features.list"] if os.path.lexists(out_dir / "features.list") else []
    return found + sorted((out_dir / "meta").glob("*.json"))


def check_extract_folder(out_dir: Path, settings: dict | None = None) -> Path:
    """Check ``out_dir`` before extracting into it (no compute; nothing is written): it is, or can be made, a writable
    folder; without our ``manifest.json`` it holds no file an extraction could overwrite (``*.npy``,
    ``features.list``, ``meta/*.json``: such a folder is refused, never written into); with one, the manifest is
    ours and (``settings``, the whole or part of a run manifest) no setting that changes the features differs.
    Raises :class:`AdplgError`; returns ``out_dir`` as a :class:`Path`."""
    out_dir = check_output_dir(out_dir, "output folder")
    path = out_dir / "manifest.json"
    if os.path.lexists(path):
        if not path.is_file():
            raise AdplgError(f"{path}: expected the manifest file of an earlier run, found a folder; pick an empty "
                             "folder for --out")
        previous = _read_manifest(path)
        for key in FEATURE_KEYS:
            if key in (settings or {}) and previous.get(key) != settings.get(key):
                raise AdplgError(
                    f"{path}: setting {key!r} differs from the earlier run in this folder: the folder has "
                    f"{previous.get(key)!r}, this run has {settings.get(key)!r} (features made with different "
                    "settings are never mixed; use a new --out folder)"
                )
        return out_dir
    foreign = _foreign_files(out_dir)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise AdplgError(f"output folder {out_dir}: holds files such as {foreign[0]}{more} but no manifest.json of "
                         "`adplg extract`, so they were not written by it; refusing to write there (nothing was "
                         "overwritten): pick an empty folder for --out, or one an earlier `adplg extract` filled")
    return out_dir


def _check_or_write_manifest(out_dir: Path, manifest: dict) -> None:
    """Write ``manifest.json`` into a new (or empty) folder; refuse a folder of foreign files, and in a used folder
    settings that change the features (:func:`check_extract_folder`)."""
    check_extract_folder(out_dir, manifest)
    path = out_dir / "manifest.json"
    if not path.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------------------ inputs
def _read_video_list(list_file: Path) -> list[Path]:
    """Video paths of a list file: one per line (``.csv``: the first column, an optional header ``path``/``video``
    is skipped); blank lines and lines starting with ``#`` are ignored; relative paths are resolved against the list's
    folder."""
    from adplg.data.lists import read_text_lines

    entries = [ln for _, ln in read_text_lines(list_file, kind="video list") if not ln.startswith("#")]
    if list_file.suffix.lower() == ".csv":
        entries = [row[0].strip() for row in csv.reader(entries) if row and row[0].strip()]
        if entries and entries[0].lower() in ("path", "video", "file", "filename"):
            entries = entries[1:]
    paths = []
    for entry in entries:
        p = Path(entry).expanduser()
        paths.append(p if p.is_absolute() else list_file.parent / p)
    return paths


def _expand_input(item: Path) -> list[Path]:
    if item.is_dir():
        found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not found:
            raise AdplgError(f"input folder {item}: no video files (expected at least one {'/'.join(VIDEO_EXTENSIONS)}"
                             " file, got 0)")
        return found
    if not item.exists():
        raise AdplgError(f"input {item}: not found (expected a video file, a folder of videos or a list file)")
    if item.suffix.lower() in LIST_EXTENSIONS:
        return _read_video_list(item)
    return [item]


def collect_videos(inputs: Iterable[Path] | Path) -> list[Path]:
    """Every video of ``inputs`` (video files, folders searched recursively, list files), sorted by video name (the
    file stem). The same file given twice counts once; two different files with one stem raise ``AdplgError``."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    by_name: dict[str, Path] = {}
    clashes: list[str] = []
    for item in inputs:
        for video in _expand_input(Path(item)):
            known = by_name.setdefault(video.stem, video)
            if known != video and known.resolve() != video.resolve():
                clashes.append(f"{video.stem!r}: {known} and {video}")
    if clashes:
        raise AdplgError("inputs: expected one video per name (the file stem names the feature files), got "
                         f"{len(clashes)} duplicate name(s): " + "; ".join(clashes))
    if not by_name:
        raise AdplgError("inputs: expected at least one video, got 0")
    return [by_name[name] for name in sorted(by_name)]


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = shard
    if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
        raise AdplgError(f"shard: expected (i, n) with 0 <= i < n, got {shard!r}")
    return index, count


# ------------------------------------------------------------------------------------------------------------ running
@dataclass
class ExtractReport:
    """What one ``extract_many`` call did. ``failed`` holds ``(video path, reason)``; ``seconds`` sums the extraction
    times of the videos done (over all workers), ``wall_seconds`` is the run's duration."""

    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    snippets: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0
    feature_list: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def snippets_per_second(self) -> float:
        """Snippets per second of extraction time (per worker)."""
        return self.snippets / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ExtractPlan:
    """What a run will do (:func:`plan_extraction`): extract ``todo`` (video paths in name order) into ``out_dir``
    under the settings ``fingerprint``; ``skipped`` names the videos already finished."""

    out_dir: Path
    naming: str
    fingerprint: str
    todo: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)


def _timing_record(video: Path, reader: SnippetReader, snippets: int) -> dict:
    """The meta record's clock keys (see the module docstring); logs a warning on a frame count mismatch."""
    record: dict = {}
    times = reader.snippet_times()
    if times is None or len(times.start_s) != snippets:
        log.warning("video %s: no presentation times and no frame rate; the record has no snippet times", video)
    else:
        record.update({
            "snippet_start_s": [round(float(t), 6) for t in times.start_s],
            "snippet_end_s": [round(float(t), 6) for t in times.end_s],
            "time_source": times.source,
            "duration_s": round(times.duration_s, 6),
            "duration_source": times.duration_source,
        })
    mismatch = frame_count_mismatch(reader.info.frames, reader.frames_decoded)
    if mismatch is not None:
        log.warning("video %s: the container counts %d frames but %d decoded; snippet times follow the decoded "
                    "frames' presentation times", video, mismatch["container"], mismatch["decoded"])
        record["frame_count_mismatch"] = mismatch
    return record


def _remove_stale_temporaries(out_dir: Path, names: list[str]) -> None:
    """Remove the temporary files that a killed earlier run left while writing ``names`` (relative to ``out_dir``;
    :func:`adplg.io.atomic_write_bytes` writes ``.<name>.<random>.tmp`` beside the target). Only called for a video
    about to be extracted again, so no other run is writing these."""
    for name in names:
        target = out_dir / name
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            stale.unlink(missing_ok=True)


def _extract_one(video: Path, extractor: FeatureExtractor, out_dir: Path, crop_files: list[str],
                 fingerprint: str, progress: Callable[[int], None] | None = None) -> int:
    """Extract, write the crop files, then the meta record (last: it marks the video as done). Returns T.
    ``progress(n)`` is called as batches of ``n`` snippets are encoded."""
    start = time.perf_counter()
    _remove_stale_temporaries(out_dir, [*crop_files, f"meta/{video.stem}.json"])
    features, reader = extractor.encode_video(video, progress)
    info, frames_decoded = reader.info, reader.frames_decoded
    for k, name in enumerate(crop_files):
        atomic_write_bytes(out_dir / name, _npy_bytes(features[:, k]))
    snippets = int(features.shape[0])
    meta = {
        "video": video.stem,
        "source": str(video.resolve()),
        "fps": info.fps,
        "container_frames": info.frames,
        "frames_decoded": frames_decoded,
        "snippets": snippets,
        "frames_covered": snippets * SNIPPET_FRAMES,
        **_timing_record(video, reader, snippets),
        "width": info.width,
        "height": info.height,
        "crops": extractor.crops,
        "crop_files": crop_files,
        "feature_shape": [snippets, int(features.shape[-1])],
        "settings_fingerprint": fingerprint,
        "seconds": round(time.perf_counter() - start, 3),
    }
    atomic_write_text(_meta_path(out_dir, video.stem), json.dumps(meta, indent=2) + "\n")
    return snippets


def _estimated_snippets(video: Path) -> int:
    """``container frames // SNIPPET_FRAMES`` (frames from duration x fps when the container has no count); 0 when
    the video cannot be probed (its extraction then fails and reports why)."""
    try:
        info = probe_video(video)
    except Exception:  # noqa: BLE001 - only an estimate for the progress bar
        return 0
    frames = info.frames or int(round(info.duration_s * info.fps))
    return frames // SNIPPET_FRAMES


def plan_extraction(inputs: Sequence[Path] | Path, extractor: FeatureExtractor, out_dir: Path, naming: str = "ucf",
                    shard: tuple[int, int] = (0, 1)) -> ExtractPlan:
    """Step 1 of every run: list this shard's videos, check (or write) the folder's ``manifest.json``, and split the
    videos into finished ones (skipped: meta record with this run's fingerprint and every crop file present) and the
    rest. Nothing is extracted."""
    if naming not in NAMINGS:
        raise AdplgError(f"--naming: expected one of {', '.join(NAMINGS)}, got {naming!r}")
    index, count = _check_shard(shard)
    videos = collect_videos(inputs)[index::count]
    out_dir = Path(out_dir)
    manifest = _run_manifest(extractor, naming)
    _check_or_write_manifest(out_dir, manifest)
    plan = ExtractPlan(out_dir=out_dir, naming=naming, fingerprint=settings_fingerprint(manifest))
    for video in videos:
        crop_files = crop_file_names(video.stem, extractor.crops, naming)
        if is_finished(out_dir, video.stem, crop_files, plan.fingerprint):
            plan.skipped.append(video.stem)
        else:
            plan.todo.append(video)
    return plan


def extract_video(video: Path, extractor: FeatureExtractor, out_dir: Path, naming: str, fingerprint: str,
                  progress: Callable[[int], None] | None = None) -> dict:
    """Step 2, the unit of work of every engine: extract one video into ``out_dir`` (crop files, then its meta
    record). Never raises for a bad video; returns the record ``{"video": name, "path", "status": "done" | "failed",
    "error": None | why, "snippets", "seconds", "settings_fingerprint"}``."""
    video = Path(video)
    start = time.perf_counter()
    snippets, error = 0, None
    try:
        snippets = _extract_one(video, extractor, Path(out_dir), crop_file_names(video.stem, extractor.crops, naming),
                                fingerprint, progress)
    except AdplgError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one broken video must not stop a long run; it is reported
        log.debug("extraction of %s failed", video, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
    return {"video": video.stem, "path": str(video), "status": "failed" if error else "done", "error": error,
            "snippets": snippets, "seconds": round(time.perf_counter() - start, 3),
            "settings_fingerprint": fingerprint}


def finish_extraction(plan: ExtractPlan, records: Iterable[dict]) -> ExtractReport:
    """Step 3: the report of the run (videos in name order, whatever order the records came in; a video without a
    record failed: its Ray worker died on it), and ``features.list`` rewritten from every finished video of the
    folder."""
    from adplg.engines import worker_died

    report = ExtractReport(out_dir=plan.out_dir, skipped=list(plan.skipped))
    by_name = {record["video"]: record for record in records}
    for video in plan.todo:  # name order
        record = by_name.get(video.stem)
        if record is None:  # its Ray worker died on it
            report.failed.append((str(video), worker_died()))
        elif record["status"] == "done":
            report.done.append(video.stem)
            report.snippets += int(record["snippets"])
            report.seconds += float(record["seconds"])
        else:
            report.failed.append((str(video), record["error"]))
    report.feature_list = write_feature_list(plan.out_dir)
    report.wall_seconds = time.perf_counter() - plan.started
    return report


class ExtractionProgress:
    """A tqdm bar counting the snippets of ``videos`` while :meth:`extract` extracts them in this process: the total
    estimated from each video's container frame count and corrected as each video finishes (rate and ETA in
    snippets), the current video in the postfix. ``enabled=False``: no probing and no bar. ``leave``: keep the
    finished bar on screen."""

    def __init__(self, videos: Sequence[Path], enabled: bool = True, leave: bool = True):
        self.enabled, self.count, self.started = enabled, len(videos), 0
        self.estimates = {Path(v): _estimated_snippets(Path(v)) for v in videos} if enabled else {}
        self.bar = tqdm(total=sum(self.estimates.values()), desc="extracting", unit="snippet", disable=not enabled,
                        dynamic_ncols=True, leave=leave)

    def extract(self, video: Path, extractor: FeatureExtractor, out_dir: Path, naming: str, fingerprint: str) -> dict:
        """:func:`extract_video`, the bar following its snippets."""
        self.started += 1
        self.bar.set_postfix_str(f"{video.name} ({self.started}/{self.count} videos)", refresh=True)
        encoded = 0

        def advance(n: int) -> None:
            nonlocal encoded
            encoded += n
            self.bar.update(n)

        record = extract_video(video, extractor, out_dir, naming, fingerprint, advance)
        estimate = self.estimates.get(Path(video), 0)
        if self.enabled and encoded != estimate:  # the container's count was off (or the video failed): fix the total
            self.bar.total = max(self.bar.n, self.bar.total - estimate + encoded)
            self.bar.refresh()
        return record

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> ExtractionProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _local_extraction_work(bar: ExtractionProgress, extractor: FeatureExtractor, plan: ExtractPlan,
                           device: str) -> Callable[[dict], dict]:
    """The setup of an in-process engine: the extractor the caller built (it keeps its device), the bar counting."""
    return lambda item: bar.extract(Path(item["video"]), extractor, plan.out_dir, plan.naming, plan.fingerprint)


def _extraction_work(build_args: dict, out_dir: str, naming: str, fingerprint: str,
                     device: str) -> Callable[[dict], dict]:
    """The setup of a Ray worker: build the extractor once on ``device``, return ``{"video": path} -> record``."""
    extractor = build_extractor(device=device, **build_args)
    extractor.decode_threads = 1  # FFmpeg's decoder threads next to PyTorch's pool in one actor can deadlock
    return lambda item: extract_video(Path(item["video"]), extractor, Path(out_dir), naming, fingerprint)


def extract_many(inputs: Sequence[Path] | Path, extractor: FeatureExtractor, out_dir: Path, naming: str = "ucf",
                 shard: tuple[int, int] = (0, 1), progress: bool = True, engine=None) -> ExtractReport:
    """Extract the features of every video of ``inputs`` (this process's shard of them) into ``out_dir``.

    Finished videos (meta record with this run's settings fingerprint, and all crop files present) are skipped; a
    failing video is recorded in the report's ``failed`` and the others continue. ``features.list`` is rewritten at
    the end. ``engine``: None (a :class:`adplg.engines.LocalEngine`) runs here, on ``extractor``; a
    :class:`adplg.engines.RayEngine` runs on a Ray cluster, each worker rebuilding the extractor from
    ``extractor.build_args()`` on its own device (``extractor`` itself then only supplies the settings).
    ``progress``: a tqdm bar (snippets here; videos on Ray).
    """
    from adplg.engines import LocalEngine

    plan = plan_extraction(inputs, extractor, out_dir, naming, shard)
    engine = engine if engine is not None else LocalEngine(device=str(extractor.device))
    if engine.in_process:  # the extractor built here does the work; the bar counts snippets
        with ExtractionProgress(plan.todo, progress) as bar:
            setup = functools.partial(_local_extraction_work, bar, extractor, plan)
            records = list(engine.map([{"video": str(v)} for v in plan.todo], setup))
    else:
        setup = functools.partial(_extraction_work, extractor.build_args(), str(Path(out_dir).resolve()), naming,
                                  plan.fingerprint)
        records = list(engine.map([{"video": str(v.resolve())} for v in plan.todo], setup, progress, "extracting"))
    return finish_extraction(plan, records)
