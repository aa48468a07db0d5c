"""Synthetic UCF-Crime-like data written in the real on-disk formats (features, list files, annotation).

The generator picks real UCF-Crime videos (names, classes, frame counts and, for abnormal test videos, their real
anomaly intervals) from the packaged table ``resources/ucf_videos.csv`` and synthesises I3D-like snippet features
for them, one ``[T, D]`` float32 ``.npy`` per crop, where ``T = num_frames // 16`` (capped at ``max_snippets``).

Feature model (per video, snippet t):

* background: ``mu + offset_v + B z_t + noise``; ``z`` is a low-rank AR(1) process over time (temporally smooth),
  ``offset_v`` a per-video low-rank offset (whole videos look "more anomalous" than others);
* anomalies (abnormal videos only, inside the annotated intervals): a gradual trapezoid envelope (ramp in/out) along
  a class-dependent direction, which shares a common "anomaly" component across classes, moderate amplitude;
* hard normal events (normal *and* abnormal videos): bursts of similar shape and magnitude along other directions,
  partly aligned with the anomaly component, so "any burst is an anomaly" fails;
* crops: the same clean signal plus small independent noise per crop.

The task is learnable from video labels alone but not trivial: a per-snippet logistic regression trained with
video labels (:func:`adplg.baselines.logistic_regression_baseline`) gets a frame AUC of about 0.77 (0.69-0.84 over
seeds 0-7 at the default sizes), while the same linear model trained with the hidden snippet labels gets about 0.88,
and i.i.d. snippet noise leaves room for methods that use temporal context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from adplg.config import DataConfig
from adplg.conventions import SNIPPET_FRAMES, crop_file_names
from adplg.errors import AdplgError

TRAIN_NORMAL_FOLDER = "Training_Normal_Videos_Anomaly"
TEST_NORMAL_FOLDER = "Testing_Normal_Videos_Anomaly"
UCF_CLASSES = (
    "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
    "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism",
)
# The on-disk layouts a synthetic set can be written in (``like``): the same videos and features, the official list,
# naming and ground-truth formats of UCF-Crime, XD-Violence or ShanghaiTech.
SYNTHETIC_LIKES = ("ucf", "xd", "sht")
# the data.* config settings that read a synthetic set of each layout (with data.list_dir = its folder)
SYNTHETIC_DATA_SETTINGS: dict[str, dict[str, str | None]] = {
    "ucf": {"format": "ucf", "train_list": "UCF_Train.list", "test_list": "UCF_Test.list",
            "annotations": "UCF_Annotation.txt", "annotation_format": "ucf", "gt_file": None},
    "xd": {"format": "xd", "train_list": "XD_Train.list", "test_list": "XD_Test.list",
           "annotations": "XD_annotations.txt", "annotation_format": "xd", "gt_file": None},
    "sht": {"format": "sht", "train_list": "SHT_Train.list", "test_list": "SHT_Test.list", "annotations": None,
            "annotation_format": "ucf", "gt_file": "sh-gt.npy"},
}
# XD-Violence's violence labels (B1 fighting, B2 shooting, B4 riot, B5 abuse, B6 car accident, G explosion): an
# XD-like abnormal video is named with the one of its UCF class's index
XD_CLASS_CODES = ("B1", "B2", "B4", "B5", "B6", "G")
SHT_SCENES = 13


# --------------------------------------------------------------------------------------------------------------
# Packaged UCF-Crime video table
# --------------------------------------------------------------------------------------------------------------
def _parse_intervals(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(";"):
        part = part.strip()
        if part:
            s, e = part.split("-")
            out.append((int(s), int(e)))
    return out


def load_ucf_video_table() -> list[dict]:
    """Read the packaged UCF-Crime video table (1,900 rows, sources in ``resources/README.md``).

    Returns one dict per video, in official list order (train then test; abnormal class/name-sorted, then normal):
    ``{"video": "Abuse028_x264", "class": "Abuse" | "Normal", "split": "train" | "test", "num_frames": int,
    "intervals": [(s, e), ...]}`` with test anomaly intervals in frames, ``[s, e)`` (empty for normal/train videos).
    """
    text = resources.files("adplg").joinpath("resources/ucf_videos.csv").read_text(encoding="utf-8")
    lines = text.splitlines()
    header = lines[0].strip().split(",")
    if header != ["video", "class", "split", "num_frames", "intervals"]:
        raise AdplgError(f"unexpected header in packaged ucf_videos.csv: {lines[0]!r}")
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        video, cls, split, num_frames, intervals = line.split(",")
        rows.append({
            "video": video,
            "class": cls,
            "split": split,
            "num_frames": int(num_frames),
            "intervals": _parse_intervals(intervals),
        })
    return rows


def ucf_folder(cls: str, split: str) -> str:
    """Folder of a UCF video under ``train/`` or ``test/``: the class, or the normal-video folder of the split."""
    if cls == "Normal":
        return TRAIN_NORMAL_FOLDER if split == "train" else TEST_NORMAL_FOLDER
    return cls


def crop_filename(video: str, crop: int) -> str:
    """Official crop naming: crop 0 is ``Name.npy``, crop k>0 is ``Name__k.npy``."""
    return f"{video}.npy" if crop == 0 else f"{video}__{crop}.npy"


# --------------------------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class SyntheticDataset:
    """Paths of what :func:`generate_synthetic_ucf` wrote: ``annotations`` (UCF-like, XD-like) or ``gt_file``
    (SHT-like: the concatenated frame GT)."""

    root: Path
    train_list: Path
    test_list: Path
    annotations: Path | None
    feature_dim: int
    crops: int
    like: str = "ucf"
    gt_file: Path | None = None


@dataclass(kw_only=True)
class _World:
    """Dataset-level parameters of the feature model."""

    mu: np.ndarray          # [D]
    bg_basis: np.ndarray    # [D, r]  temporal background
    off_basis: np.ndarray   # [D, r_o] per-video offset
    class_dirs: dict        # class -> unit [D]
    hard_dirs: np.ndarray   # [K, D] unit


# Feature-model constants (tuned so that the logistic baseline lands at frame AUC ~0.7-0.8; see module docstring).
_BG_RANK = 8
_BG_SCALE = 1.0          # std of each background latent (AR(1), stationary)
_OFF_RANK = 4
_OFF_SCALE = 0.6         # std of each per-video offset latent
_NOISE = 0.35            # isotropic per-snippet noise std per dim
_CROP_NOISE = 0.1        # independent per-crop noise std per dim
_ANOM_SHARED = 0.6       # cosine between each class direction and the common anomaly direction
_HARD_SHARED = 0.35      # cosine between each hard-normal direction and the common anomaly direction
_NUM_HARD_DIRS = 6
_AMP = (1.6, 3.0)        # anomaly / hard-event amplitude range
_HARD_RATE = 1.5         # Poisson mean of hard normal events per video
_HARD_LEN = (0.03, 0.15)  # hard-event length as a fraction of the video


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _make_world(rng: np.random.Generator, dim: int) -> _World:
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    common = q[:, 0]
    rest = q[:, 1:]  # everything orthogonal to the common anomaly direction

    def mixed(shared: float) -> np.ndarray:
        v = _unit(rest @ rng.standard_normal(rest.shape[1]))
        return shared * common + np.sqrt(1.0 - shared**2) * v

    class_dirs = {c: mixed(_ANOM_SHARED) for c in UCF_CLASSES}
    hard_dirs = np.stack([mixed(_HARD_SHARED) for _ in range(_NUM_HARD_DIRS)])
    r = min(_BG_RANK, dim)
    r_o = min(_OFF_RANK, dim)
    bg = np.linalg.qr(rng.standard_normal((dim, r)))[0]
    off = np.linalg.qr(rng.standard_normal((dim, r_o)))[0]
    mu = rng.standard_normal(dim) * 0.5
    return _World(mu=mu, bg_basis=bg, off_basis=off, class_dirs=class_dirs, hard_dirs=hard_dirs)


def _envelope(num_snippets: int, start: float, end: float, ramp_frac: float) -> np.ndarray:
    """Trapezoid envelope over snippets for a frame interval [start, end) (snippet t = frames [16t, 16t+16))."""
    centres = np.arange(num_snippets) * SNIPPET_FRAMES + SNIPPET_FRAMES / 2.0
    ramp = max(float(SNIPPET_FRAMES), ramp_frac * (end - start))
    env = np.minimum(centres - start, end - centres) / ramp
    return np.clip(env, 0.0, 1.0)


def _scale_intervals(intervals, num_frames_real: int, num_frames_out: int, scale: float) -> list[tuple[int, int]]:
    out = []
    for s, e in intervals:
        s2 = int(round(s * scale))
        e2 = int(round(min(e, num_frames_real) * scale))
        s2 = max(0, min(s2, num_frames_out - 1))
        e2 = min(max(e2, s2 + SNIPPET_FRAMES), num_frames_out)
        if e2 > s2:
            out.append((s2, e2))
    return out


def _draw_train_intervals(rng, templates, num_frames_out: int) -> list[tuple[int, int]]:
    """Intervals for an abnormal train video, drawn like the test ones: the relative layout of a random real test
    video's anomalies (same lengths and gaps as fractions of the video), shifted to a random position."""
    tpl_intervals, tpl_frames = templates[rng.integers(len(templates))]
    rel = [(s / tpl_frames, min(e, tpl_frames) / tpl_frames) for s, e in tpl_intervals]
    lo, hi = min(s for s, _ in rel), max(e for _, e in rel)
    shift = rng.uniform(-lo, 1.0 - hi)
    return _scale_intervals([(s + shift, e + shift) for s, e in rel], 1, num_frames_out, float(num_frames_out))


def _synth_video(rng, world: _World, num_snippets: int, cls: str, intervals, crops: int) -> list[np.ndarray]:
    dim = world.mu.shape[0]
    t_len = num_snippets
    # background: low-rank AR(1) latent + per-video offset + isotropic noise
    r = world.bg_basis.shape[1]
    rho = rng.uniform(0.85, 0.97)
    innov = rng.standard_normal((t_len, r)) * np.sqrt(1.0 - rho**2)
    z = np.empty((t_len, r))
    z[0] = rng.standard_normal(r)
    for t in range(1, t_len):
        z[t] = rho * z[t - 1] + innov[t]
    offset = world.off_basis @ (rng.standard_normal(world.off_basis.shape[1]) * _OFF_SCALE)
    x = world.mu + offset + _BG_SCALE * (z @ world.bg_basis.T) + _NOISE * rng.standard_normal((t_len, dim))

    frames = t_len * SNIPPET_FRAMES
    # anomalies: gradual, along the class direction
    if cls != "Normal":
        direction = world.class_dirs[cls]
        for s, e in intervals:
            amp = rng.uniform(*_AMP)
            env = _envelope(t_len, s, e, rng.uniform(0.15, 0.4))
            x += (amp * env)[:, None] * direction[None, :]
    # hard normal events, in every video, possibly overlapping anomalies
    for _ in range(rng.poisson(_HARD_RATE)):
        length = max(2 * SNIPPET_FRAMES, rng.uniform(*_HARD_LEN) * frames)
        start = rng.uniform(-0.25 * length, frames - 0.75 * length)
        amp = rng.uniform(*_AMP)
        env = _envelope(t_len, start, start + length, rng.uniform(0.15, 0.4))
        x += (amp * env)[:, None] * world.hard_dirs[rng.integers(len(world.hard_dirs))][None, :]
    return [(x + _CROP_NOISE * rng.standard_normal(x.shape)).astype(np.float32) for _ in range(crops)]


def generate_synthetic_ucf(
    out_dir,
    *,
    num_train_normal: int = 40,
    num_train_abnormal: int = 40,
    num_test_normal: int = 20,
    num_test_abnormal: int = 20,
    feature_dim: int = 64,
    crops: int = 2,
    max_snippets: int = 400,
    seed: int = 0,
    relative_paths: bool = False,
    like: str = "ucf",
) -> SyntheticDataset:
    """Write a synthetic UCF-Crime-like dataset in the official ADPLG-VAD on-disk formats and return its paths.

    Layout under ``out_dir`` (= ``root``)::

        train/<Class>/<Name>_x264.npy, <Name>_x264__1.npy, ...        # abnormal train, [T, feature_dim] float32
        train/Training_Normal_Videos_Anomaly/Normal_VideosNNN_x264*.npy
        test/<Class>/...,  test/Testing_Normal_Videos_Anomaly/...
        UCF_Train.list     # abnormal videos first (class/name sorted) then normal, crops contiguous
        UCF_Test.list      # same layout
        UCF_Annotation.txt # "Class/Name_x264.mp4 <nframes> <Class> s1 e1 s2 e2 " (-1 = none), nframes = 16*T
        synthetic.json     # the generation parameters

    Videos are real UCF-Crime videos drawn (seeded) from the packaged table; ``T = num_frames // 16`` capped at
    ``max_snippets`` (intervals are scaled when capping). Abnormal test videos keep their real anomaly intervals
    (frames, ``[s, e)``, clipped to ``16*T``); abnormal train videos get intervals drawn like the test ones, which
    are never written (weak labels only). Deterministic for a given ``seed``.

    The lists hold absolute paths, like the authors' lists; ``relative_paths=True`` writes them relative to the
    lists' folder (``train/Abuse/Abuse028_x264.npy``), which the list readers resolve against that folder, so the
    whole folder can be moved (what ``adplg demo`` writes).

    ``like`` (:data:`SYNTHETIC_LIKES`) writes the same videos and features in another dataset's official layout
    (read with the settings :data:`SYNTHETIC_DATA_SETTINGS`):

    * ``xd``: ``train/<video>_label_A__k.npy`` (normal) and ``<video>_label_<B1..G>-0-0__k.npy`` (abnormal, XD's
      labels) in ``XD_Train.list`` / ``XD_Test.list``, and ``XD_annotations.txt`` (``<name> s1 e1 [s2 e2]``, abnormal
      test videos only);
    * ``sht``: ``train/<scene>_<id>_k.npy`` (ids of 4 digits abnormal, 3 normal) in ``SHT_Train.list``
      (``<path> 1.0|0.0``, name-sorted) / ``SHT_Test.list`` (no label column, abnormal videos first), and
      ``sh-gt.npy``: the test videos' frame labels (16 per snippet) concatenated in list order.
    """
    counts = {
        "num_train_normal": num_train_normal, "num_train_abnormal": num_train_abnormal,
        "num_test_normal": num_test_normal, "num_test_abnormal": num_test_abnormal,
    }
    for name, value in counts.items():
        if int(value) != value or value < 0:
            raise AdplgError(f"{name} must be a non-negative integer, got {value!r}")
    if num_train_normal + num_train_abnormal == 0 or num_test_normal + num_test_abnormal == 0:
        raise AdplgError("the synthetic dataset needs at least one train and one test video")
    if feature_dim < 2:
        raise AdplgError(f"feature_dim must be >= 2, got {feature_dim}")
    if crops < 1:
        raise AdplgError(f"crops must be >= 1, got {crops}")
    if max_snippets < 1:
        raise AdplgError(f"max_snippets must be >= 1, got {max_snippets}")
    if like not in SYNTHETIC_LIKES:
        raise AdplgError(f"like must be one of {', '.join(SYNTHETIC_LIKES)}, got {like!r}")

    table = load_ucf_video_table()
    pools = {
        ("train", False): [r for r in table if r["split"] == "train" and r["class"] != "Normal"],
        ("train", True): [r for r in table if r["split"] == "train" and r["class"] == "Normal"],
        ("test", False): [r for r in table if r["split"] == "test" and r["class"] != "Normal"],
        ("test", True): [r for r in table if r["split"] == "test" and r["class"] == "Normal"],
    }
    wanted = {
        ("train", False): num_train_abnormal, ("train", True): num_train_normal,
        ("test", False): num_test_abnormal, ("test", True): num_test_normal,
    }
    for key, n in wanted.items():
        if n > len(pools[key]):
            kind = "normal" if key[1] else "abnormal"
            raise AdplgError(f"asked for {n} {kind} {key[0]} videos, UCF-Crime has only {len(pools[key])}")

    ss = np.random.SeedSequence(seed)
    world_ss, select_ss, video_ss = ss.spawn(3)
    world = _make_world(np.random.default_rng(world_ss), feature_dim)
    select_rng = np.random.default_rng(select_ss)
    chosen = {}
    for key in [("train", False), ("train", True), ("test", False), ("test", True)]:
        pool = pools[key]
        idx = np.sort(select_rng.choice(len(pool), size=wanted[key], replace=False))
        chosen[key] = [pool[i] for i in idx]  # pool order is the official (sorted) list order

    templates = [(r["intervals"], r["num_frames"]) for r in pools[("test", False)] if r["intervals"]]

    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # per split: (video name, its list lines); the test videos' names, frame labels and annotation lines
    listed: dict[str, list[tuple[str, list[str]]]] = {"train": [], "test": []}
    test_gt: list[np.ndarray] = []
    annotation_lines: list[str] = []
    videos = [(key, row) for key in [("train", False), ("train", True), ("test", False), ("test", True)]
              for row in chosen[key]]
    video_seeds = video_ss.spawn(len(videos))
    for number, (((split, _normal), row), vss) in enumerate(zip(videos, video_seeds), start=1):
        rng = np.random.default_rng(vss)
        real_t = max(1, row["num_frames"] // SNIPPET_FRAMES)
        t_len = min(real_t, max_snippets)
        frames = t_len * SNIPPET_FRAMES
        cls = row["class"]
        if cls == "Normal":
            intervals = []
        elif split == "test" and row["intervals"]:
            intervals = _scale_intervals(row["intervals"], row["num_frames"], frames, t_len / real_t)
            if not intervals:  # annotated anomaly fell entirely in the trimmed tail frames
                intervals = _draw_train_intervals(rng, templates, frames)
        else:
            intervals = _draw_train_intervals(rng, templates, frames)
        intervals = intervals[:2]  # the official annotation format has two slots

        name, folder, files = _video_files(like, root / split, row["video"], cls, split, number, crops)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for path, feat in zip(files, _synth_video(rng, world, t_len, cls, intervals, crops)):
            np.save(path, feat)
            line = str(path.relative_to(root) if relative_paths else path)
            lines.append(f"{line} {0.0 if cls == 'Normal' else 1.0}" if like == "sht" and split == "train" else line)
        listed[split].append((name, lines))
        if split == "test":
            annotation_lines += _annotation_lines(like, name, cls, split, frames, intervals)
            labels = np.zeros(frames, dtype=np.uint8)
            for s, e in intervals:
                labels[s:e] = 1
            test_gt.append(labels)

    if like == "sht":  # the official SHT training list is sorted by name, normal and abnormal videos interleaved
        listed["train"].sort(key=lambda video: video[0])
    settings = SYNTHETIC_DATA_SETTINGS[like]
    train_list, test_list = root / str(settings["train_list"]), root / str(settings["test_list"])
    for path, split in ((train_list, "train"), (test_list, "test")):
        path.write_text("\n".join(line for _, lines in listed[split] for line in lines) + "\n", encoding="utf-8")
    annotations = gt_file = None
    if settings["annotations"]:
        annotations = root / settings["annotations"]
        annotations.write_text("\n".join(annotation_lines) + "\n", encoding="utf-8")
    if settings["gt_file"]:
        gt_file = root / settings["gt_file"]
        np.save(gt_file, np.concatenate(test_gt))
    meta = dict(counts, feature_dim=feature_dim, crops=crops, max_snippets=max_snippets, seed=seed,
                relative_paths=relative_paths, like=like, generator="adplg.data.synthetic.generate_synthetic_ucf")
    (root / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return SyntheticDataset(root=root, train_list=train_list, test_list=test_list, annotations=annotations,
                            feature_dim=feature_dim, crops=crops, like=like, gt_file=gt_file)


def synthetic_like_for(data: DataConfig) -> str:
    """The layout (:data:`SYNTHETIC_LIKES`) of a synthetic set for a config's data: its list format (``ucf``, ``xd``,
    ``sht``), for the VadCLIP csv lists its annotation format (``ucf-clip`` -> ``ucf``), else ``ucf``."""
    if data.format in SYNTHETIC_LIKES:
        return data.format
    return data.annotation_format if data.format == "csv" else "ucf"


def _video_files(like: str, split_dir: Path, video: str, cls: str, split: str, number: int,
                 crops: int) -> tuple[str, Path, list[Path]]:
    """``(video name, folder, crop files)`` of a video in the ``like`` layout; ``number`` (1, 2, ... over the
    whole set) makes the SHT-like names unique."""
    if like == "ucf":
        folder = split_dir / ucf_folder(cls, split)
        return video, folder, [folder / crop_filename(video, k) for k in range(crops)]
    if like == "xd":
        label = "A" if cls == "Normal" else f"{XD_CLASS_CODES[UCF_CLASSES.index(cls) % len(XD_CLASS_CODES)]}-0-0"
        name = f"{video}_label_{label}"
    else:
        scene = 1 + number % SHT_SCENES
        name = f"{scene:02d}_{number:03d}" if cls == "Normal" else f"{scene:02d}_{number:04d}"
    return name, split_dir, [split_dir / file for file in crop_file_names(name, crops, like)]


def _annotation_lines(like: str, name: str, cls: str, split: str, frames: int,
                      intervals: list[tuple[int, int]]) -> list[str]:
    """The annotation file's line(s) of a test video: every video in UCF_Annotation.txt (two slots, -1 when
    unused), the abnormal ones in XD_annotations.txt, none for SHT (its GT is a frame array)."""
    if like == "ucf":
        slots = [v for s_e in intervals for v in s_e] + [-1] * (4 - 2 * len(intervals))
        return [f"{ucf_folder(cls, split)}/{name}.mp4 {frames} {cls} " + " ".join(map(str, slots)) + " "]
    if like == "xd" and cls != "Normal":
        return [f"{name} " + " ".join(f"{s} {e}" for s, e in intervals)]
    return []
