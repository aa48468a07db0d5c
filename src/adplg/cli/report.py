"""``adplg report SCORES_DIR``: a static review site (no server, no network) for a folder of ``adplg score`` outputs
or of an ``adplg serve`` outputs folder: argument parsing over :func:`adplg.report.build_report` and
:func:`adplg.report.build_service_report`."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  adplg score footage/ --checkpoint ucf.safetensors --weights rgb_imagenet.pt --out scores/cams
  adplg report scores/cams --out report/cams         # then open report/cams/index.html in a browser
  adplg report adplg-serve --out report/today        # the alerts of `adplg serve`: clips, snapshots, outages
  # source videos elsewhere (matched by file name), annotated anomalies drawn on the curves
  adplg report scores/ucf --videos /data/UCF-Crime/videos --annotations Temporal_Anomaly_Annotation.txt
  # reviewers mark alerts true/false in the pages and download verdicts.json; the false alerts' footage
  # then counts as normal footage when calibrating
  adplg calibrate normal-features/ --checkpoint ucf.safetensors --target-far 0.01 --verdicts verdicts.json
"""


def cmd_report(args: argparse.Namespace) -> int:
    """``adplg report``: build the static review site of a scores folder and print what it holds. Returns 0."""
    from adplg.io import check_output_owner
    from adplg.report import build_report, build_service_report, is_service_outputs
    from adplg.report.build import REPORT_OUTPUT_NAMES

    check_output_owner(args.out, "report", REPORT_OUTPUT_NAMES, what="report --out folder", overwrite=args.overwrite)
    if is_service_outputs(args.scores_dir):
        unused = [flag for flag, value in (("--videos", args.videos), ("--annotations", args.annotations)) if value]
        if unused:
            print(f"note: {' and '.join(unused)} apply to `adplg score` outputs only; {args.scores_dir} is an "
                  "`adplg serve` outputs folder (its clips are the footage)")
        service = build_service_report(args.scores_dir, args.out, title=args.title, overwrite=args.overwrite)
        print(f"{service.videos} camera(s), {service.alerts} alert(s); clip found for {service.linked_videos}, "
              f"snapshot for {service.thumbnails} ({service.seconds:.1f} s)")
        for note in service.notes[:5]:
            print(f"note: {note}")
        print(f"open {service.index.resolve().as_uri()}; every alert: {service.alerts_csv}")
        return 0
    summary = build_report(args.scores_dir, args.out, videos_dir=args.videos, annotations=args.annotations,
                           annotation_format=args.annotation_format, thumbnails=not args.no_thumbnails,
                           max_points=args.max_points, title=args.title, overwrite=args.overwrite)
    print(f"{summary.videos} video(s), {summary.alerts} alert(s); source video found for {summary.linked_videos}, "
          f"{summary.thumbnails} thumbnail(s) ({summary.seconds:.1f} s)")
    for note in summary.notes[:5]:
        print(f"note: {note}")
    if len(summary.notes) > 5:
        print(f"note: and {len(summary.notes) - 5} more (listed on the index page)")
    print(f"open {summary.index.resolve().as_uri()}; every alert: {summary.alerts_csv}")
    return 0


def add_parser(sub) -> None:
    """Register ``report``."""
    p = sub.add_parser("report", help="a static review site for a folder of `adplg score` or `adplg serve` outputs",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scores_dir", metavar="SCORES_DIR", help="the folder `adplg score --out` wrote, or the outputs "
                                                             "folder of `adplg serve` (events.jsonl, clips/)")
    p.add_argument("--videos", help="folder holding the source videos (matched by file name, searched recursively; "
                                    "default: the extraction records beside the features)")
    p.add_argument("--out", default="report", help="output folder (default ./report)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds files adplg report did not write (refused otherwise)")
    p.add_argument("--annotations", help="anomaly annotations to draw on the curves (UCF or XD format)")
    p.add_argument("--annotation-format", choices=("ucf", "xd"), default="ucf")
    p.add_argument("--no-thumbnails", action="store_true", help="skip decoding a frame at each alert's start")
    p.add_argument("--max-points", type=int, default=2000,
                   help="curve points per page; longer timelines keep each bucket's minimum and maximum (default "
                        "2000)")
    p.add_argument("--title", help="the index page's title (default: the scores folder's name)")
    p.set_defaults(func=cmd_report)
