"""The bad-input table (issue 14), `adplg report` and verdicts cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bad_inputs_harness import CaseTable, Workspace, base_checkpoint, do  # noqa: F401 - base_checkpoint: the fixture

table = CaseTable()
case, cases = table.case, table.cases


# ---- report (a folder of `adplg score` outputs -> a static site) and calibrate --verdicts
def _report(w: Workspace, scores: Path) -> list[str]:
    return ["report", str(scores), "--out", str(w.root / "report"), "--no-thumbnails"]


case("report-scores-missing")(lambda w: (_report(w, w.root / "nope"), [str(w.root / "nope")]))
case("report-scores-empty")(lambda w: (_report(w, w.folder("empty-scores")), [str(w.root / "empty-scores")]))
case("report-summary-corrupt")(lambda w: (_report(w, w.write("scores/summary.json", "{not json").parent),
                                          ["summary.json"]))
case("report-out-under-a-file")(lambda w: (["report", str(w.write("scores/cam.json", "{}").parent), "--out",
                                            str(w.write("f", "x") / "report")], [str(w.root / "f")]))
case("calibrate-verdicts-corrupt")(lambda w: (w.calibrate("--verdicts", str(w.write("verdicts.json", "[1, 2"))),
                                              ["verdicts.json"]))



# ---- issue 26: output folders adplg did not write, report inputs read back, verdicts
def _scored(w: Workspace) -> Path:
    """``w.root / "scores"`` as ``adplg score`` writes it (the case's preparation)."""
    import contextlib
    import io

    from adplg.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(w.score()) == 0
    return w.root / "scores"


def _edit_score(w: Workspace, change) -> Path:
    scores = _scored(w)
    path = scores / "clip.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return scores


def _segment(data: dict, **values) -> None:
    data["segments"] = [{"start_s": 0.0, "end_s": 1.0, "peak_score": 0.9, "mean_score": 0.5, **values}]


case("score-out-holds-foreign-files")(lambda w: (do(w.write("scores/summary.json", "{}"), w.write("scores/a.csv", "x"),
                                                    w.score()), [str(w.root / "scores"), "a.csv"]))
case("report-out-holds-foreign-files")(lambda w: (do(
    w.write("report/index.html", "mine"), w.write("report/alerts.csv", "mine"),
    w.write("report/assets/report.css", "x"),
    _report(w, w.write("scores/cam.json", "{}").parent)), [str(w.root / "report"), "alerts.csv"]))
case("report-score-segment-nan")(lambda w: (_report(w, _edit_score(w, lambda d: _segment(d, peak_score=math.nan))),
                                            ["clip.json", "peak_score"]))
case("report-score-mean-not-a-number")(lambda w: (_report(w, _edit_score(w, lambda d: _segment(d, mean_score="hi"))),
                                                  ["clip.json", "mean_score"]))
case("report-summary-video-escapes")(lambda w: (do(w.write("secret/private.json", "{}"), _report(w, _edit_summary(w))),
                                                ["summary.json", "../../secret/private"]))


def _edit_summary(w: Workspace) -> Path:
    scores = _scored(w)
    summary = json.loads((scores / "summary.json").read_text())
    summary["videos"][0]["video"] = "../../secret/private"
    (scores / "summary.json").write_text(json.dumps(summary))
    return scores


def _verdicts(w: Workspace, features: str, copies: int) -> Path:
    entry = {"video": "clip", "start_s": 0.0, "end_s": 2.0, "verdict": "false_alert", "features": [features]}
    return w.write("review/verdicts.json", json.dumps({"format": "adplg-verdicts", "version": 1,
                                                      "scores_dir": "../features", "verdicts": [entry] * copies}))


def _one_false_alert_counted(w: Workspace) -> list[str]:
    from adplg.alert_rules import AlertRules

    used = AlertRules.load(w.root / "rules.json").calibration.get("verdicts", {})
    return [] if used.get("false_alerts") == 1 and used.get("duplicates_dropped") == 49 else [f"recorded {used}"]


case("calibrate-verdicts-duplicated", accepted=_one_false_alert_counted)(
    lambda w: (w.calibrate("--verdicts", str(_verdicts(w, "../features/clip.npy", 50))), ["49 duplicate"]))
case("calibrate-verdicts-path-outside")(
    lambda w: (w.calibrate("--verdicts", str(_verdicts(w, "../../../../../../etc/passwd", 1))),
               ["verdicts.json", "outside the scores folder"]))


test_bad_input = table.pytest_test()
