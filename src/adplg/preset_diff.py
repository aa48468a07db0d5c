"""What a preset built on another (``base:``) changes: the diff of resolved configs against its faithful preset, the
improved preset of a faithful one (``--improved``) and the faithful twin of an improved one (the same model size and
schedule with the faithful options), which ``benchmarks/synthetic.py`` trains beside it.

The faithful preset of a preset is the last of its :func:`~adplg.config.preset_lineage` (a preset without base, e.g.
``ucf-i3d`` for ``ucf-i3d-improved-cpu``).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from adplg.config import Config, build_config
from adplg.errors import AdplgError
from adplg.preset_files import preset_lineage, preset_names

IMPROVED_SUFFIX = "-improved"
# keys that name or describe a preset, never what it computes: left out of the diffs
DESCRIPTIVE_KEYS = ("name", "description")
# what makes a model CPU-sized and its schedule short: the faithful twin of a preset takes these from it and every
# other key (the improvement options among them) from the faithful preset
SIZE_AND_SCHEDULE_KEYS = (
    "model.model_dim", "model.attn_dim", "model.local_heads", "model.local_dim_head", "model.local_out_dim",
    "model.global_heads", "model.global_dim_head", "model.mlp_dim",
    "train.batch_size", "train.num_iters", "train.warm_up", "train.eval_every", "train.log_every", "train.lr_v",
    "train.lr_s",
)

Change = tuple[str, Any, Any]  # (dotted key, value before, value after)


def flat_settings(cfg: Config) -> dict[str, Any]:
    """Every key of ``cfg`` as ``dotted key -> value`` (JSON values: tuples are lists), in declaration order."""
    out: dict[str, Any] = {}

    def walk(mapping: dict, prefix: str) -> None:
        for key, value in mapping.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[prefix + key] = value

    walk(cfg.to_dict(), "")
    return out


def config_changes(before: Config, after: Config) -> list[Change]:
    """The keys whose value differs from ``before`` to ``after`` (name and description left out), in declaration
    order."""
    old, new = flat_settings(before), flat_settings(after)
    return [(key, old[key], new[key]) for key in new if key not in DESCRIPTIVE_KEYS and old[key] != new[key]]


def faithful_preset(name: str) -> str:
    """The preset ``name`` builds on through its ``base:`` chain (``name`` itself when it has no base)."""
    return preset_lineage(name)[-1]


def preset_changes(name: str, against: str | None = None) -> list[Change]:
    """What preset ``name`` changes against preset ``against`` (default its :func:`faithful_preset`), from their
    resolved configs."""
    return config_changes(build_config(against or faithful_preset(name)), build_config(name))


def show_value(value: Any) -> str:
    """A config value as the diff shows it: ``0.0003``, ``time``, ``null``, ``[2, 4, 6, 8]``."""
    return value if isinstance(value, str) else json.dumps(value)


def changes_text(changes: list[Change], width: int = 120, label: str = "") -> str:
    """``<label>model.snippet_members 1->3, loss.smooth_axis batch->time, ...``, wrapped to ``width``, the lines
    after the first indented to where the changes start."""
    glue = "\u00a0"  # not a break point for textwrap: a change is never split over two lines
    text = ", ".join(f"{key}{glue}{show_value(old)}->{show_value(new)}" for key, old, new in changes) or "nothing"
    return textwrap.fill(text, width=width, initial_indent=label, subsequent_indent=" " * len(label),
                         break_on_hyphens=False).replace(glue, " ")


def split_changes(changes: list[Change]) -> tuple[list[Change], list[Change]]:
    """``(options, size and schedule)``: the changes of the model's options (what the faithful twin undoes) and of
    its size and schedule (:data:`SIZE_AND_SCHEDULE_KEYS`, what the twin keeps)."""
    size = [change for change in changes if change[0] in SIZE_AND_SCHEDULE_KEYS]
    return [change for change in changes if change[0] not in SIZE_AND_SCHEDULE_KEYS], size


def improved_preset(name: str) -> str:
    """The improved preset of ``name`` (``ucf-i3d`` -> ``ucf-i3d-improved``; an improved preset is itself), what
    the seed commands' ``--improved`` picks; a preset without one is an error listing the improved presets."""
    if IMPROVED_SUFFIX in name:
        return name
    names = preset_names()
    wanted = name + IMPROVED_SUFFIX
    if wanted not in names:
        improved = [n for n in names if n.endswith(IMPROVED_SUFFIX)]
        raise AdplgError(f"preset {name!r} has no improved preset (expected {wanted!r}, one of: "
                         f"{', '.join(improved)}); name one with --preset instead", parameter="improved")
    return wanted


def faithful_twin(name: str) -> tuple[str, list[str]]:
    """``(faithful preset, overrides)``: the faithful preset of ``name`` at ``name``'s model size and schedule
    (:data:`SIZE_AND_SCHEDULE_KEYS`), every other key faithful, e.g. ``ucf-i3d`` at the widths and the 600 steps of
    ``ucf-i3d-improved-cpu`` without its improvement options: the model an improved preset is measured against.
    ``name=<faithful>-twin`` names its runs apart."""
    faithful = faithful_preset(name)
    if faithful == name:
        raise AdplgError(f"preset {name!r} builds on no other preset (no base:), so it has no faithful twin")
    own = flat_settings(build_config(name))
    overrides = [f"{key}={json.dumps(own[key])}" for key in SIZE_AND_SCHEDULE_KEYS]
    return faithful, [*overrides, f"name={faithful}-twin"]
