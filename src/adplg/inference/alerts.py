"""Which alert rules apply to a model: its rules file beside the checkpoint, a rules file named, single rules given.

The rules themselves (:class:`~adplg.alert_rules.AlertRules`: hysteresis, merge gap, minimum duration) and what they
make of a score timeline are :mod:`adplg.alert_rules`. They are plain post-processing of the scores, kept in a small
YAML file beside the model (never inside an exported graph), so they can be re-calibrated per camera without touching
the network (:mod:`adplg.inference.calibration`).

Which rules apply (:func:`resolve_rules`): an alert rules file when one is named, else the model's own (saved beside
its checkpoint, else a fixed 0.5 threshold); then any single rule given explicitly overrides its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from adplg.alert_rules import AlertRules

ALERTS_SUFFIX = ".alerts.yaml"


def rules_path_for(checkpoint: Path) -> Path:
    """Where the alert rules of a checkpoint live: ``<checkpoint without suffix>.alerts.yaml`` beside it."""
    from adplg.checkpoints.format import checkpoint_file

    weights = checkpoint_file(checkpoint)
    return weights.with_name(weights.stem + ALERTS_SUFFIX)


# the overrides of resolve_rules, in the order the source text names them
RULE_OVERRIDES = ("on_threshold", "off_threshold", "min_duration_s", "merge_gap_s")


def resolve_rules(base: AlertRules, base_source: str, *, alerts_file: str | Path | None = None,
                  on_threshold: float | None = None, off_threshold: float | None = None,
                  min_duration_s: float | None = None, merge_gap_s: float | None = None,
                  labels: Mapping[str, str] | None = None) -> tuple[AlertRules, str]:
    """The alert rules that apply, and where they came from (the text ``adplg score`` records as
    ``alert_rules_source``).

    Precedence, lowest first: ``base`` (a model's rules, :attr:`Scorer.rules <adplg.inference.scorer.Scorer.rules>`,
    described by ``base_source``); the rules file ``alerts_file``, which replaces them whole; then each rule given
    here, which replaces that one value (the calibration record is kept). ``off_threshold`` defaults to the given
    ``on_threshold`` when only that is given (no hysteresis), else to the rules' own.

    The source is ``base_source`` (or the file's path) followed by ``" with <label> <value>, ..."`` for the rules
    given; ``labels`` maps a parameter to the label to write (the command line passes its flags, as in
    ``"ckpt.alerts.yaml with --threshold 0.3"``), else the parameter's name. A bad value is an
    :class:`AdplgError` about its parameter."""
    if alerts_file is not None:
        base, base_source = AlertRules.load(Path(alerts_file)), str(alerts_file)
    given = {"on_threshold": on_threshold, "off_threshold": off_threshold, "min_duration_s": min_duration_s,
             "merge_gap_s": merge_gap_s}
    on = base.on_threshold if on_threshold is None else on_threshold
    off = off_threshold if off_threshold is not None else (on if on_threshold is not None else base.off_threshold)
    rules = AlertRules(on_threshold=on, off_threshold=off,
                       min_duration_s=base.min_duration_s if min_duration_s is None else min_duration_s,
                       merge_gap_s=base.merge_gap_s if merge_gap_s is None else merge_gap_s,
                       calibration=dict(base.calibration))
    labels = labels or {}
    changed = [f"{labels.get(name, name)} {value:g}" for name in RULE_OVERRIDES
               if (value := given[name]) is not None]
    return rules, f"{base_source} with {', '.join(changed)}" if changed else base_source
