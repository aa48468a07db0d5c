"""``adplg report``: a static review site for a folder of ``adplg score`` outputs, and the reviewers' verdicts.

    from adplg.report import build_report, read_verdicts
    build_report("scores/cams", "report/cams", videos_dir="footage/")   # open report/cams/index.html
    verdicts = read_verdicts("verdicts.json")                            # downloaded from the report's pages
    build_service_report("adplg-serve", "report/today")                  # the alerts of `adplg serve`, with clips

The site needs no server and no network (it works from ``file://``): ``index.html`` lists every video, sortable by
peak score, alert count and alerted time, with the checkpoint and alert rules; ``videos/<name>.html`` shows the score
curve, thresholds, alerts, annotated anomalies and, when the source video is found, a player that seeks to an alert
when it is clicked; ``alerts.csv`` has one row per alert of every video. See :mod:`adplg.report.build`; the verdicts
the site downloads are read by :mod:`adplg.inference.verdicts` (calibration uses them).
"""

from adplg.inference.verdicts import Verdict, Verdicts, false_alert_timelines, read_verdicts
from adplg.report.build import ReportSummary, build_report, downsample_curve
from adplg.report.scores import read_scores
from adplg.report.service import build_service_report, is_service_outputs, read_service_events

__all__ = ["ReportSummary", "Verdict", "Verdicts", "build_report", "build_service_report", "downsample_curve",
           "false_alert_timelines", "is_service_outputs", "read_scores", "read_service_events", "read_verdicts"]
