"""``adplg extract``: the extraction run, snippet features from raw videos into a folder in the layout of the
published I3D / CLIP feature files.

Every video is cut into consecutive, non-overlapping 16-frame snippets (a final partial snippet is dropped; fewer
than 16 decodable frames is an error for that video). Each snippet gives one feature per crop view
(:mod:`adplg.features.extractors`: the backbones and their preprocessing), and every crop is written as its own
``[T, D]`` float32 ``.npy`` file.

The output folder is in the extraction folder format (:mod:`adplg.data.extraction`: ``manifest.json``,
``meta/<video>.json``, the crop files named by ``naming``, ``features.list``). ``meta/<video>.json`` is written after
all crop files of a video and marks it as done: a re-run skips a video whose record holds this run's
``settings_fingerprint`` and whose crop files all exist. A re-run with a setting that changes the features stops with
an error instead of mixing features, and a folder without our ``manifest.json`` that already holds ``.npy`` files
(or ``features.list``, ``meta/*.json``) is refused: foreign files are never overwritten. ``features.list`` is
regenerated from all finished videos at the end of every run. When the container's frame count differs from the
frames decoded, a warning is logged and the record says so.

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
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from adplg.conventions import LIST_EXTENSIONS, NAMINGS, SNIPPET_FRAMES, VIDEO_EXTENSIONS, crop_file_names
from adplg.data.extraction import (
    TIME_FROM_PTS,
    check_extract_folder,
    encode_frame_pts,
    is_finished,
    manifest_path,
    meta_path,
    settings_fingerprint,
    write_crop_file,
    write_feature_list,
    write_manifest,
    write_video_record,
)
from adplg.errors import AdplgError
from adplg.features.extractors import FeatureExtractor, build_extractor
from adplg.features.video import SnippetReader, frame_count_mismatch, probe_video
from adplg.io import remove_stale_temporaries

__all__ = [
    "ExtractReport",
    "ExtractPlan",
    "ExtractionProgress",
    "collect_videos",
    "extract_many",
    "extract_video",
    "finish_extraction",
    "plan_extraction",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------- manifest
def _run_manifest(extractor: FeatureExtractor, naming: str) -> dict:
    """The ``manifest.json`` of a run (see :mod:`adplg.data.extraction`): the extractor's settings, the naming and
    the versions."""
    from adplg._version import __version__
    from adplg.runtime import versions

    return {**extractor.settings(), "naming": naming, "adplg": __version__, "versions": versions()}


def _check_or_write_manifest(out_dir: Path, manifest: dict) -> None:
    """Write ``manifest.json`` into a new (or empty) folder; refuse a folder of foreign files, and in a used folder
    settings that change the features (:func:`~adplg.data.extraction.check_extract_folder`)."""
    check_extract_folder(out_dir, manifest)
    if not manifest_path(out_dir).is_file():
        write_manifest(out_dir, manifest)


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
        raise AdplgError("expected one video per name (the file stem names the feature files), got "
                         f"{len(clashes)} duplicate name(s): " + "; ".join(clashes), parameter="inputs")
    if not by_name:
        raise AdplgError("expected at least one video, got 0", parameter="inputs")
    return [by_name[name] for name in sorted(by_name)]


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = shard
    if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
        raise AdplgError(f"expected (i, n) with 0 <= i < n, got {shard!r}", parameter="shard")
    return index, count


# ------------------------------------------------------------------------------------------------------------ running
@dataclass(kw_only=True)
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
        """True when no video failed."""
        return not self.failed

    @property
    def snippets_per_second(self) -> float:
        """Snippets per second of extraction time (per worker)."""
        return self.snippets / self.seconds if self.seconds > 0 else 0.0


@dataclass(kw_only=True)
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
            **({"frame_pts": encode_frame_pts(times.frame_start_s, times.time_base)}
               if times.source == TIME_FROM_PTS and times.frame_start_s is not None else {}),
            "duration_s": round(times.duration_s, 6),
            "duration_source": times.duration_source,
        })
    assert reader.info is not None  # set when the iteration opened the video
    mismatch = frame_count_mismatch(reader.info.frames, reader.frames_decoded)
    if mismatch is not None:
        log.warning("video %s: the container counts %d frames but %d decoded; snippet times follow the decoded "
                    "frames' presentation times", video, mismatch["container"], mismatch["decoded"])
        record["frame_count_mismatch"] = mismatch
    return record


def _extract_one(video: Path, extractor: FeatureExtractor, out_dir: Path, crop_files: list[str],
                 fingerprint: str, progress: Callable[[int], None] | None = None) -> int:
    """Extract, write the crop files, then the meta record (last: it marks the video as done). Returns T.
    ``progress(n)`` is called as batches of ``n`` snippets are encoded."""
    start = time.perf_counter()
    for target in [*(out_dir / name for name in crop_files), meta_path(out_dir, video.stem)]:
        remove_stale_temporaries(target)  # left by a killed earlier run of this video
    features, reader = extractor.encode_video(video, progress)
    info, frames_decoded = reader.info, reader.frames_decoded
    assert info is not None  # set when the iteration opened the video
    for k, name in enumerate(crop_files):
        write_crop_file(out_dir / name, features[:, k])
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
    write_video_record(out_dir, video.stem, meta)
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
        raise AdplgError(f"expected one of {', '.join(NAMINGS)}, got {naming!r}", parameter="naming")
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
        """Close the progress bar."""
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
