"""The conventions shared by extraction, training, evaluation and scoring, each defined once: the snippet length,
the feature backbones, the crop views and CLIP frame modes, the video and list file extensions, and how the crop
files of a video are named. Plain values only (no torch), so the command line can build its parsers from them.

Crop file naming (``naming``)
    ``ucf``: crop 0 -> ``<name>.npy``, crop k >= 1 -> ``<name>__k.npy`` (the UCF-Crime 10-crop files);
    ``xd``: ``<name>__k.npy`` for every k (XD-Violence, 5 crops); ``sht``: ``<name>_k.npy`` (ShanghaiTech).
"""

from __future__ import annotations

import re

from adplg.errors import AdplgError

SNIPPET_FRAMES = 16  # frames per snippet of every published feature set (I3D and CLIP)

# backbone name -> feature dimension of its snippet features
BACKBONES = {"i3d": 1024, "clip": 512}
# crops extracted by default: the published I3D sets are 10-crop (UCF, SHT); VadCLIP tests one crop
DEFAULT_CROPS = {"i3d": 10, "clip": 1}
# crop views per snippet an extraction can cut (see adplg.features.video: 1 centre, 5 with the corners, 10 with flips)
CROP_COUNTS = (1, 5, 10)
# how the CLIP backbone turns a 16-frame snippet into one feature: its middle frame, or the mean of all 16
CLIP_FRAME_MODES = ("middle", "mean")

# file suffixes (lower case) of the videos an extraction input folder is searched for, and of video list files
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ts")
LIST_EXTENSIONS = (".txt", ".list", ".csv")

NAMINGS = ("ucf", "xd", "sht")
_CROP_SUFFIX = re.compile(r"^(.*)__(\d+)$")  # UCF / XD / csv: name__k
_SHT_CROP_SUFFIX = re.compile(r"^(.*)_(\d{1,2})$")  # SHT: 01_0014_3 (video ids have 3-4 digits after '_')


def check_naming(naming: str) -> str:
    """``naming`` itself when it is one of :data:`NAMINGS` (``ucf``, ``xd``, ``sht``); else an AdplgError."""
    if naming not in NAMINGS:
        raise AdplgError(f"naming: expected one of {', '.join(NAMINGS)}, got {naming!r}")
    return naming


def crop_file_names(name: str, crops: int, naming: str = "ucf") -> list[str]:
    """File names of the crops of video ``name``, in crop order."""
    check_naming(naming)
    if naming == "ucf":
        return [f"{name}.npy" if k == 0 else f"{name}__{k}.npy" for k in range(crops)]
    if naming == "xd":
        return [f"{name}__{k}.npy" for k in range(crops)]
    return [f"{name}_{k}.npy" for k in range(crops)]


def split_crop_suffix(stem: str, fmt: str = "ucf") -> tuple[str, int]:
    """``'Abuse001_x264__3'`` -> ``('Abuse001_x264', 3)``; no suffix -> crop 0. ``fmt='sht'``: ``'01_0014_3'``."""
    m = (_SHT_CROP_SUFFIX if fmt == "sht" else _CROP_SUFFIX).match(stem)
    if m is None:
        return stem, 0
    return m.group(1), int(m.group(2))


def backbone_for_dim(feature_dim: int) -> str | None:
    """The backbone whose features have ``feature_dim`` dimensions, or None."""
    return next((name for name, dim in BACKBONES.items() if dim == feature_dim), None)
