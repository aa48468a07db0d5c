"""``adplg score`` (features or videos -> per-frame scores, alert segments, plots) and ``adplg calibrate`` (alert
thresholds from normal footage to a target false-alarm rate, saved beside the model): argument parsing over
:class:`adplg.inference.scorer.Scorer`."""

from __future__ import annotations

import argparse
from pathlib import Path

from adplg.cli.common import add_alert_rule_args, rules_from_args, split_model_files
from adplg.conventions import BACKBONES, NAMINGS

EXAMPLES_SCORE = """examples:
  # features made by `adplg extract` (fps from their records), alert rules from beside the checkpoint
  adplg score features/ --checkpoint runs/ucf-i3d-seed42-.../checkpoints/last.safetensors
  # a video straight away: I3D features (10 crops, as the checkpoint's config) are extracted into OUT/features
  adplg score shop.mp4 --checkpoint ucf.safetensors --weights rgb_imagenet.pt --out shop-scores
  # UCF-Crime test features with the official annotations shaded in the plots, the authors' checkpoint
  adplg score /data/UCF-10Crop/Arson --checkpoint ucf_model_s_best.pkl --preset ucf-i3d --fps 30 \\
      --annotations Temporal_Anomaly_Annotation.txt
  # thousands of videos on a Ray cluster: one job per video (extract, score, write); a re-run (local runs too)
  # skips the videos scored already
  adplg score /nfs/videos --checkpoint /nfs/ucf.safetensors --weights /nfs/rgb_imagenet.pt --out /nfs/scores \\
      --engine ray --address head-node:6379 --workers 8 --gpus-per-worker 1
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
    p.add_argument("--allow-incomplete", action="store_true",
                   help="score half-extracted videos of an `adplg extract` folder (crop files without their "
                        "meta/<video>.json record, or fewer crops than it names) instead of refusing them")
    p.add_argument("overrides", nargs="*", default=[], metavar="section.key=value", help="dotted config overrides")


def _scorer(args: argparse.Namespace):
    from adplg.inference.scorer import load

    args.checkpoint, overrides = split_model_files(args.checkpoint)
    return load(args.checkpoint, preset=args.preset, config=args.config, overrides=[*args.overrides, *overrides],
                device=args.device)


def _score_options(args: argparse.Namespace) -> dict:
    return {"fps": args.fps, "naming": args.naming, "weights": args.weights, "backbone": args.backbone,
            "progress": not args.quiet, "allow_incomplete": args.allow_incomplete}


def _check_score_outputs(args: argparse.Namespace) -> None:
    """Before loading or scoring anything: ``score --out`` (and its ``features`` folder) is a writable folder."""
    from adplg.inference.scorer import SCORE_OUTPUT_NAMES
    from adplg.io import check_output_dir, check_output_owner

    out = check_output_owner(args.out, "score", SCORE_OUTPUT_NAMES, what="score --out folder",
                             overwrite=args.overwrite)
    check_output_dir(out / "features", "score features folder (for video inputs)")


def _check_calibrate_outputs(args: argparse.Namespace) -> None:
    """Before loading or scoring anything: the rules file (``--out``, else beside the first checkpoint) can be
    written, and ``--features-dir`` is a folder an extraction may write into."""
    from adplg.data.extraction import check_extract_folder
    from adplg.inference.alerts import rules_path_for
    from adplg.io import check_output_file

    if args.out:
        check_output_file(args.out, "calibrate --out rules file")
    else:
        files = split_model_files(args.checkpoint)[0]
        if files and Path(files[0]).exists():  # a missing checkpoint is reported when loading it
            check_output_file(rules_path_for(Path(files[0])), "alert rules file (beside the checkpoint)")
    if args.features_dir:
        check_extract_folder(args.features_dir)


def _print_scores(rules, source: str, videos: list[dict], out: Path) -> None:
    print(f"alert rules: {source} (on {rules.on_threshold:.4f}, off {rules.off_threshold:.4f}, "
          f"min {rules.min_duration_s:g} s, merge gap {rules.merge_gap_s:g} s)")
    for s in videos:
        spans = ", ".join(f"{g['start_s']:.1f}-{g['end_s']:.1f}s" for g in s["segments"][:5])
        more = f" (+{len(s['segments']) - 5})" if len(s["segments"]) > 5 else ""
        print(f"{s['video']}: {s['duration_s']:.1f} s, max score {s['max_score']:.3f}, "
              f"{len(s['segments'])} alert(s){': ' + spans + more if spans else ''}")
    if videos:
        print(f"timelines, plots and summary.json in {out}")


def _model_spec(args: argparse.Namespace):
    """The checkpoint as workers in other processes load it: absolute paths (their working folders differ; on a
    cluster the files must be on a shared filesystem)."""
    from adplg.inference.jobs import ModelSpec

    files, overrides = split_model_files(args.checkpoint)
    return ModelSpec(checkpoints=tuple(str(Path(f).resolve()) for f in files), preset=args.preset,
                     config=str(Path(args.config).resolve()) if args.config else None,
                     overrides=tuple([*args.overrides, *overrides]))


def cmd_score(args: argparse.Namespace) -> int:
    """``adplg score``: one job per video (:mod:`adplg.inference.jobs`), in this process or on Ray (``--engine``);
    videos scored already with the same settings are skipped, so a killed run resumes. 0 when every video was
    scored (or skipped), 1 when some failed, 2 when all failed; each failure is printed to stderr."""
    import sys

    from adplg.cli.extract import engine_from_args
    from adplg.inference.jobs import score_many

    _check_score_outputs(args)
    engine = engine_from_args(args)  # None: this process, on the scorer loaded here
    if engine is None:
        scorer, model = _scorer(args), None
    else:
        model = _model_spec(args)
        scorer = model.load(device="cpu")  # here for the settings and the rules; every worker loads its own
    rules, source = rules_from_args(args, scorer)
    scorer.check_rules(rules)
    out = Path(args.out)
    report = score_many(scorer, args.inputs, out, model=model, rules=rules, rules_source=source, fps=args.fps,
                        naming=args.naming, weights=args.weights, backbone=args.backbone,
                        allow_incomplete=args.allow_incomplete, annotations=args.annotations,
                        annotation_format=args.annotation_format, plot=not args.no_plot, engine=engine,
                        progress=not args.quiet, overwrite=args.overwrite)
    _print_scores(rules, source, report.summary["videos"] if report.summary else [], out)
    print(f"scored {len(report.done)} video(s), skipped {len(report.skipped)} scored already, {len(report.failed)} "
          f"failed on {report.engine} in {report.wall_seconds:.1f} s")
    for video, reason in report.failed:
        print(f"adplg: error: {video}: {reason}", file=sys.stderr)
    if report.ok:
        return 0
    return 2 if not report.done and not report.skipped else 1


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``adplg calibrate``: alert rules for a target false-alarm rate on normal inputs, saved as JSON. Returns 0."""
    from adplg.inference.verdicts import read_verdicts

    _check_calibrate_outputs(args)
    verdicts = read_verdicts(args.verdicts) if args.verdicts else None  # a bad file is reported before any loading
    scorer = _scorer(args)
    rules = scorer.calibrate(args.inputs, args.target_far, hysteresis=args.hysteresis,
                             min_duration_s=args.min_duration, merge_gap_s=args.merge_gap, save_to=args.out or True,
                             verdicts=verdicts, features_dir=args.features_dir, **_score_options(args))
    c = rules.calibration
    low, high = c["far_95_prediction_interval"]
    if verdicts is not None and not c["verdicts"]["false_alerts"]:
        print(f"note: {args.verdicts} marks no false alert; calibrated on the normal footage alone")
    print(f"on threshold {rules.on_threshold:.4f}, off {rules.off_threshold:.4f}: false-alarm rate "
          f"{c['achieved_far']:.4%} (target {args.target_far:.4%}; 95% prediction interval {low:.4%}-{high:.4%}), "
          f"{c['alerts_per_hour']:.2f} alerts/hour on {c['hours']:.2f} h of {c['videos']} normal video(s)")
    if c.get("footage_note"):
        print(f"note: {c['footage_note']}")
    if c.get("verdicts"):
        v = c["verdicts"]
        print(f"verdicts: {v['false_alerts']} false alert(s), {v['false_alert_seconds']:.1f} s, counted as normal "
              f"footage ({v['true_alerts_not_used']} true alert(s) not used)")
    print(f"alert rules: {scorer.rules_source}")
    return 0


def add_parser(sub) -> None:
    """Register ``score`` and ``calibrate``."""
    from adplg.cli.extract import add_engine_args

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("score", help="per-frame scores, alert segments and plots for features or videos",
                       epilog=EXAMPLES_SCORE, formatter_class=fmt)
    _add_common(p)
    p.add_argument("--out", default="scores", help="output folder (default ./scores)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds files adplg score did not write (refused otherwise)")
    add_alert_rule_args(p, "alert rules YAML (default: <checkpoint>.alerts.yaml beside the checkpoint)")
    p.add_argument("--annotations", help="anomaly annotations to shade in the plots (UCF or XD format)")
    p.add_argument("--annotation-format", choices=("ucf", "xd"), default="ucf")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    add_engine_args(p)
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
    p.add_argument("--verdicts", help="verdicts.json downloaded from an `adplg report`: the footage of its false "
                                      "alerts counts as extra normal footage")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_calibrate)
