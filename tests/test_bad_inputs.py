"""Issue 14: a table of bad inputs, run through every command (and the official seed scripts).

The cases are split by surface into ``tests/test_bad_inputs_<surface>.py`` (train, score, report, watch); the
runner is ``tests/bad_inputs_harness.py``. ``python tests/test_bad_inputs.py`` runs ALL the cases and prints the
counts of the reliability issue (tried / clear / partly clear / accepted / tracebacks / exit 0 where an error was due
/ existing data changed).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import test_bad_inputs_report  # noqa: E402
import test_bad_inputs_score  # noqa: E402
import test_bad_inputs_train  # noqa: E402
import test_bad_inputs_watch  # noqa: E402
from bad_inputs_harness import Case, summarize  # noqa: E402

SURFACES = (test_bad_inputs_train, test_bad_inputs_score, test_bad_inputs_report, test_bad_inputs_watch)
CASES: list[Case] = [c for surface in SURFACES for c in surface.table.cases_list]


def test_the_table_covers_every_command():
    from adplg.cli.main import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices) - {"presets"}  # presets takes no input
    covered = {c.id.split("-")[0] for c in CASES}
    assert commands <= covered, commands - covered
    assert len({c.id for c in CASES}) == len(CASES)


if __name__ == "__main__":
    summarize(CASES)
