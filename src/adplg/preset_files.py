"""The bundled preset files (``adplg/presets/<name>.yaml``): their names, their ``base:`` chains, and the merge of
settings mappings that resolves them. :mod:`adplg.config` validates what they give."""

from __future__ import annotations

import difflib
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import yaml

from adplg.errors import AdplgError


def preset_folder() -> Traversable:
    """The folder of the bundled preset files (``adplg/presets/<name>.yaml``)."""
    return resources.files("adplg") / "presets"


def preset_names() -> list[str]:
    """The names of the bundled presets (``presets/<name>.yaml``), sorted."""
    return sorted(p.name[: -len(".yaml")] for p in preset_folder().iterdir() if p.name.endswith(".yaml"))


def _unknown_preset(name: str, names: list[str], what: str) -> AdplgError:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return AdplgError(f"{what} {name!r}{hint}; expected one of: {', '.join(names)}")


def read_preset_file(name: str) -> dict[str, Any]:
    """The mapping of preset file ``presets/<name>.yaml`` as written (its ``base`` key included); an unknown name is
    an error that suggests the closest preset."""
    names = preset_names()
    if name not in names:
        raise _unknown_preset(name, names, "unknown preset")
    data = yaml.safe_load((preset_folder() / f"{name}.yaml").read_text()) or {}
    if not isinstance(data, dict):
        raise AdplgError(f"preset {name!r} (presets/{name}.yaml): expected a mapping of sections, got a "
                         f"{type(data).__name__}")
    return data


def preset_lineage(name: str) -> list[str]:
    """``[name, its base, the base's base, ...]``: a preset file may start from another with ``base: <preset>``
    (that preset's resolved settings first, then its own keys merged over them). The last entry has no base: the
    faithful preset the chain builds on. An unknown base, a base that is not a name, or a cycle is an error."""
    chain = [name]
    base = read_preset_file(name).get("base")
    while base is not None:
        where = f"preset {chain[-1]!r} (presets/{chain[-1]}.yaml): base"
        if not isinstance(base, str) or not base:
            raise AdplgError(f"{where}: expected the name of another preset, got {base!r}")
        if base in chain:
            raise AdplgError(f"{where}: the bases form a cycle ({' -> '.join([*chain, base])}); expected a chain "
                             f"that ends at a preset without base")
        names = preset_names()
        if base not in names:
            raise _unknown_preset(base, names, f"{where}: unknown preset")
        chain.append(base)
        base = read_preset_file(base).get("base")
    return chain


def load_preset(name: str) -> dict[str, Any]:
    """The unvalidated mapping of preset ``name``, its ``base:`` chain resolved (:func:`preset_lineage`: the base's
    settings first, then the preset's own); an unknown name is an error that suggests the closest preset."""
    merged: dict[str, Any] = {}
    for item in reversed(preset_lineage(name)):
        own = {key: value for key, value in read_preset_file(item).items() if key != "base"}
        merged = merge_settings(merged, own)
    return merged


def merge_settings(base: dict, update: dict) -> dict:
    """``update`` merged into ``base`` recursively (nested mappings merge, anything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = value
    return out
