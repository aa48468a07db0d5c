"""The bad-input table (issue 14), `adplg report` and verdicts cases."""

from __future__ import annotations

import json
from pathlib import Path

from bad_inputs_harness import CaseTable, Workspace, base_checkpoint  # noqa: F401 - base_checkpoint: the fixture

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


test_bad_input = table.pytest_test()
