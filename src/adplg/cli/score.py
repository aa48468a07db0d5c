"""``adplg score`` (features or videos -> per-frame scores, alert segments, plots) and ``adplg calibrate`` (alert
thresholds from normal footage to a target false-alarm rate, saved beside the model)."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from adplg.conventions import BACKBONES, NAMINGS
from adplg.errors import AdplgError

log = logging.getLogger(__name__)

FEW_VIDEOS = 30  # below this, calibrate says its interval is rough

EXAMPLES_SCORE = """examples:
  # features made by `adplg extract` (fps from their records), alert rules from beside the checkpoint
  adplg score features/ --checkpoint runs/ucf-i3d-seed42-.../checkpoints/last.safetensors
  # a video straight away: I3D features (10 crops, as the checkpoint's config) are extracted into OUT/features
  adplg score shop.mp4 --checkpoint ucf.safetensors --weights rgb_imagenet.pt --out shop-scores
  # UCF-Crime test features with the official annotations shaded in the plots, the authors' checkpoint
  adplg score /data/UCF-10Crop/Arson --checkpoint ucf_model_s_best.pkl --preset ucf-i3d --fps 30 \\
      --annotations Temporal_Anomaly_Annotation.txt
"""

EXAMPLES_CALIBRATE = """examples:
  # at most 1% of normal frames inside an alert; alerts end 0.1 below the start threshold,
  # last at least 2 s, and merge across gaps up to 3 s; writes checkpoints/last.alerts.yaml
  adplg calibrate normal-footage-features/ --checkpoint runs/ucf-.../checkpoints/last.safetensors \\
      --target-far 0.01 --hysteresis 0.1 --min-duration 2 --merge-gap 3
  adplg calibrate cam1-normal.mp4 cam1-normal-2.mp4 --checkpoint ucf.safetensors --weights rgb_imagenet.pt \\
      --target-far 0.005 --out cam1.alerts.yaml
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="FEATURES|VIDEO",
                   help=".npy feature files ([T, D] per crop or [T, C, D]), folders of them, or video files")
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="our .safetensors checkpoint (or its run directory) or the authors' *_model_s_*.pkl; several: "
                        "an ensemble scoring their mean (alert rules beside the first)")
    p.add_argument("--preset", help="config preset (needed for the authors' .pkl files; ours carry their config)")
    p.add_argument("--config", help="a YAML file merged over the config")
    p.add_argument("--fps", type=float, help="frame rate of feature files without an extraction record (default 30)")
    p.add_argument("--naming", choices=NAMINGS,
                   help="crop file naming: ucf/xd '<video>__k.npy', sht '<video>_k.npy' (default: the extraction "
                        "manifest's, else ucf)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--weights", help="backbone weights for video inputs (pytorch-i3d rgb_imagenet.pt or CLIP "
                                     "ViT-B-16.pt / a Hugging Face folder)")
    p.add_argument("--backbone", choices=tuple(BACKBONES),
                   help="backbone for video inputs (default: from the checkpoint's feature size, 1024 i3d, 512 clip)")
    p.add_argument("overrides", nargs="*", default=[], metavar="section.key=value", help="dotted config overrides")


def _load(args: argparse.Namespace):
    from adplg.cli.main import split_model_files
    from adplg.inference.load import load_scorer
    from adplg.runtime import resolve_device

    args.checkpoint, overrides = split_model_files(args.checkpoint)
    cfg, net_s = load_scorer(args.checkpoint, args.preset, args.config, [*args.overrides, *overrides])
    device = resolve_device(args.device)
    return cfg, net_s.to(device), device


def _is_video(path: Path) -> bool:
    if path.is_dir():
        return not any(path.rglob("*.npy"))
    return path.suffix != ".npy"


def _extract_videos(videos: list[Path], cfg, args: argparse.Namespace, out_dir: Path, device) -> Path:
    """Features of video inputs into ``out_dir`` with the crops of the checkpoint's config; returns the folder."""
    from adplg.conventions import DEFAULT_CROPS, backbone_for_dim
    from adplg.inference.extract import build_extractor, extract_many

    if not args.weights:
        raise AdplgError(f"{videos[0]}: a video input needs the backbone weights (--weights rgb_imagenet.pt for I3D,"
                         f" --weights ViT-B-16.pt for CLIP)")
    backbone = args.backbone or backbone_for_dim(cfg.data.feature_dim)
    if backbone is None:
        raise AdplgError(f"the checkpoint expects {cfg.data.feature_dim}-d features, which neither backbone gives "
                         f"(i3d 1024, clip 512); pass --backbone to force one")
    crops = cfg.data.test_crops or DEFAULT_CROPS[backbone]  # a config without a crop count: the backbone's default
    extractor = build_extractor(backbone, Path(args.weights), crops=crops, device=str(device))
    report = extract_many(videos, extractor, out_dir, naming=args.naming or "ucf", progress=not args.quiet)
    if report.failed:
        raise AdplgError("feature extraction failed for " + "; ".join(f"{v}: {why}" for v, why in report.failed))
    return out_dir


def _timelines(args: argparse.Namespace, cfg, net_s, device, feature_dir: Path):
    from adplg.inference.score import score_inputs

    inputs = [Path(p) for p in args.inputs]
    videos = [p for p in inputs if p.exists() and _is_video(p)]
    features = [p for p in inputs if p not in videos]
    naming = args.naming or _manifest_naming(features) or "ucf"
    if videos:
        args.naming = naming
        features.append(_extract_videos(videos, cfg, args, feature_dir, device))
    return score_inputs(net_s, features, cfg.data.feature_dim, naming=naming, fps=args.fps, device=device,
                        precision=cfg.eval.precision, batch_snippets=cfg.eval.batch_snippets,
                        expected_crops=cfg.data.test_crops, progress=not args.quiet)


def _manifest_naming(inputs: list[Path]) -> str | None:
    """The crop naming recorded by ``adplg extract`` in the (first) input folder's manifest.json, if any."""
    for path in inputs:
        manifest = (path if path.is_dir() else path.parent) / "manifest.json"
        if manifest.is_file():
            try:
                return json.loads(manifest.read_text()).get("naming")
            except json.JSONDecodeError:
                raise AdplgError(f"extraction manifest {manifest} is not valid JSON") from None
    return None


def resolve_rules(args: argparse.Namespace):
    """``--alerts``, else the rules saved beside the checkpoint, else a fixed 0.5 threshold; then the flags."""
    from adplg.inference.alerts import AlertRules, rules_path_for

    beside = rules_path_for(Path(args.checkpoint[0]))
    if args.alerts:
        rules, source = AlertRules.load(Path(args.alerts)), args.alerts
    elif beside.is_file():
        rules, source = AlertRules.load(beside), str(beside)
    else:
        rules, source = AlertRules(), "default (threshold 0.5, no calibration)"
    on = rules.on_threshold if args.threshold is None else args.threshold
    off = args.off_threshold if args.off_threshold is not None else (
        on if args.threshold is not None else rules.off_threshold)
    rules = AlertRules(on, off, rules.min_duration_s if args.min_duration is None else args.min_duration,
                       rules.merge_gap_s if args.merge_gap is None else args.merge_gap, rules.calibration)
    return rules, source


def _model_sha256(checkpoints: list[str]) -> str:
    """The sha256 of the weights file, or for an ensemble the sha256 of its members' hashes in order."""
    import hashlib

    from adplg.checkpoint import checkpoint_file
    from adplg.io import file_sha256

    hashes = [file_sha256(checkpoint_file(c)) for c in checkpoints]
    return hashes[0] if len(hashes) == 1 else hashlib.sha256(" ".join(hashes).encode()).hexdigest()


def _check_rules_model(rules, checkpoints: list[str]) -> None:
    recorded = rules.calibration.get("checkpoint_sha256")
    if recorded and recorded != _model_sha256(checkpoints):
        log.warning("the alert rules were calibrated on another checkpoint (%s); re-run `adplg calibrate`",
                    rules.calibration.get("checkpoint"))


def cmd_score(args: argparse.Namespace) -> int:
    from adplg.data.gt import read_annotations
    from adplg.inference.score import annotated_spans, write_timeline
    from adplg.io import atomic_write_text

    cfg, net_s, device = _load(args)
    rules, source = resolve_rules(args)
    _check_rules_model(rules, args.checkpoint)
    out = Path(args.out)
    annotations = read_annotations(args.annotations, args.annotation_format) if args.annotations else None
    timelines = _timelines(args, cfg, net_s, device, out / "features")
    summaries = [write_timeline(out, t, rules, annotated_spans(annotations, t.name, t.fps), plot=not args.no_plot)
                 for t in timelines]
    atomic_write_text(out / "summary.json", json.dumps(
        {"checkpoint": args.checkpoint, "alert_rules": rules.to_dict(), "alert_rules_source": source,
         "videos": summaries}, indent=2))
    print(f"alert rules: {source} (on {rules.on_threshold:.4f}, off {rules.off_threshold:.4f}, "
          f"min {rules.min_duration_s:g} s, merge gap {rules.merge_gap_s:g} s)")
    for s in summaries:
        spans = ", ".join(f"{g['start_s']:.1f}-{g['end_s']:.1f}s" for g in s["segments"][:5])
        more = f" (+{len(s['segments']) - 5})" if len(s["segments"]) > 5 else ""
        print(f"{s['video']}: {s['duration_s']:.1f} s, max score {s['max_score']:.3f}, "
              f"{len(s['segments'])} alert(s){': ' + spans + more if spans else ''}")
    print(f"timelines, plots and summary.json in {out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from adplg.checkpoint import checkpoint_file
    from adplg.inference.alerts import calibrate, rules_path_for

    cfg, net_s, device = _load(args)
    with tempfile.TemporaryDirectory(prefix="adplg-calibrate-") as tmp:
        timelines = _timelines(args, cfg, net_s, device, Path(args.features_dir or tmp))
    rules = calibrate([(t.frame_scores, t.fps) for t in timelines], args.target_far, args.hysteresis,
                      args.min_duration, args.merge_gap)
    rules.calibration.update({"checkpoint": [str(checkpoint_file(c)) for c in args.checkpoint],
                              "checkpoint_sha256": _model_sha256(args.checkpoint),
                              "normal_videos": [t.name for t in timelines]})
    out = Path(args.out) if args.out else rules_path_for(Path(args.checkpoint[0]))
    rules.save(out)
    c = rules.calibration
    low, high = c["far_95_prediction_interval"]
    print(f"on threshold {rules.on_threshold:.4f}, off {rules.off_threshold:.4f}: false-alarm rate "
          f"{c['achieved_far']:.4%} (target {args.target_far:.4%}; 95% prediction interval {low:.4%}-{high:.4%}), "
          f"{c['alerts_per_hour']:.2f} alerts/hour on {c['hours']:.2f} h of {c['videos']} normal video(s)")
    if c["videos"] < FEW_VIDEOS:
        print(f"note: {c['videos']} normal video(s) is little footage; false alarms cluster in a few videos, so the "
              f"interval is only a rough guide (use {FEW_VIDEOS}+ videos the model was not trained on)")
    print(f"alert rules: {out}")
    return 0


def add_parser(sub) -> None:
    """Register ``score`` and ``calibrate``."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("score", help="per-frame scores, alert segments and plots for features or videos",
                       epilog=EXAMPLES_SCORE, formatter_class=fmt)
    _add_common(p)
    p.add_argument("--out", default="scores", help="output folder (default ./scores)")
    p.add_argument("--alerts", help="alert rules YAML (default: <checkpoint>.alerts.yaml beside the checkpoint)")
    p.add_argument("--threshold", type=float, help="alert start threshold (overrides the rules)")
    p.add_argument("--off-threshold", type=float, help="alert end threshold (hysteresis; default = --threshold)")
    p.add_argument("--min-duration", type=float, help="drop alerts shorter than this many seconds")
    p.add_argument("--merge-gap", type=float, help="merge alerts separated by at most this many seconds")
    p.add_argument("--annotations", help="anomaly annotations to shade in the plots (UCF or XD format)")
    p.add_argument("--annotation-format", choices=("ucf", "xd"), default="ucf")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("calibrate", help="alert thresholds from normal footage for a target false-alarm rate",
                       epilog=EXAMPLES_CALIBRATE, formatter_class=fmt)
    _add_common(p)
    p.add_argument("--target-far", type=float, required=True,
                   help="largest allowed fraction of normal frames inside an alert, e.g. 0.01")
    p.add_argument("--hysteresis", type=float, default=0.0, help="off threshold = on threshold - this (default 0)")
    p.add_argument("--min-duration", type=float, default=0.0, help="minimum alert length in seconds (default 0)")
    p.add_argument("--merge-gap", type=float, default=0.0, help="merge alerts closer than this, seconds (default 0)")
    p.add_argument("--out", help="rules file (default <checkpoint>.alerts.yaml beside the checkpoint)")
    p.add_argument("--features-dir", help="keep the features extracted from video inputs here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_calibrate)
