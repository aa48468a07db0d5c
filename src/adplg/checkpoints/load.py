"""Load the scoring branch (``net_s``) with its config from any supported checkpoint.

Which config builds the model:
- **our checkpoints** (``.safetensors`` + ``.json`` sidecar, or a run directory) always build the model they were
  trained with, from the config saved in the sidecar. A ``preset`` / ``config_file`` / ``overrides`` given beside
  them only fill in the data section's paths (``data.list_dir``, the lists, roots, annotations, GT, test crops and
  layout), the evaluation settings (``eval.*``), the device and ``model.attention`` (``SETTABLE_KEYS``); other keys
  that disagree with the checkpoint are reported and ignored.
- **the authors' ``*_model_s_*.pkl`` files** carry no config: it comes from ``preset`` (default ``ucf-i3d``) plus the
  config file and overrides.
Weights that do not fit the model built from that config raise one clear :class:`AdplgError` (never PyTorch's
state_dict traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from adplg.config import Config, build_config, settings
from adplg.errors import AdplgError
from adplg.models.ensemble import SnippetEnsemble
from adplg.models.snippet_branch import SnippetBranch
from adplg.preset_files import merge_settings

log = logging.getLogger(__name__)

# what a preset, config file or override may set for one of our checkpoints: where the data are and how they are
# read and evaluated, never what the weights' shape depends on (feature_dim, model sizes, ...)
SETTABLE_KEYS = {
    "data": ("format", "list_dir", "train_list", "test_list", "feature_root", "train_root", "test_root",
             "annotations", "annotation_format", "gt_file", "mmap", "test_crops", "layout"),
    "model": ("attention",),  # blocked or dense local attention: the same weights and the same math
    "train": ("device", "progress"),
}
# the data section's paths: a checkpoint's saved ones are used only where the user gives none, and that is logged
DATA_PATH_KEYS = ("list_dir", "train_list", "test_list", "feature_root", "train_root", "test_root", "annotations",
                  "gt_file")


def _checkpoint_config(saved: dict, preset: str | None, config_file: str | None,
                       overrides: Sequence[str], source: Path, announce_data: bool = True) -> Config:
    """The checkpoint's own config, with the user's ``SETTABLE_KEYS`` and ``eval.*`` settings applied on top; any
    other key the user sets that differs from the checkpoint is reported and ignored. The data paths saved in the
    checkpoint that the user does not set are logged (INFO, ``announce_data``): they come from the sidecar, which
    may have been written elsewhere (or crafted), so they are never used silently."""
    user = settings(preset, config_file, list(overrides))
    update: dict = {}
    ignored: list[str] = []
    for section, values in user.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if section == "eval" or key in SETTABLE_KEYS.get(section, ()):
                update.setdefault(section, {})[key] = value
            elif saved.get(section, {}).get(key, value) != value:
                ignored.append(f"{section}.{key}")
    if ignored:
        explicit = {item.split("=", 1)[0].strip() for item in overrides}
        log.log(logging.WARNING if explicit & set(ignored) else logging.INFO,
                "%s: uses the config it was trained with; ignored %s (a checkpoint's model and training settings "
                "cannot change; a preset only supplies data paths)", source, ", ".join(ignored))
    if announce_data:
        given = update.get("data", {})
        kept = {key: value for key, value in (saved.get("data") or {}).items()
                if key in DATA_PATH_KEYS and key not in given and value is not None}
        if kept:
            log.info("%s: using the data paths saved in the checkpoint's config (give data.list_dir, --feature_root, "
                     "... to use others): %s", source,
                     ", ".join(f"data.{key}={value}" for key, value in kept.items()))
    return build_config(base=merge_settings(saved, update), source=f"the config saved in {source.with_suffix('.json')}",
                        training=False)


def load_weights(net, state: dict, path: Path, what: str = "snippet branch") -> None:
    """``net.load_state_dict(state)`` with every missing, unexpected or mis-shaped key in one :class:`AdplgError`."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                 f"{len(shapes)} of another shape (file vs model, e.g. {shapes[:3]})" if shapes else ""]
        raise AdplgError(f"{path}: the weights do not fit the configured {what}: "
                         + "; ".join(p for p in parts if p)
                         + " (for the authors' .pkl files pick the matching --preset; our checkpoints build their own "
                           "model)")
    net.load_state_dict(state, strict=True)


def load_snippet_branch(model_file: str | Path, preset: str | None = None, config_file: str | None = None,
                        overrides: Sequence[str] = (), announce_data: bool = True
                        ) -> tuple[Config, SnippetBranch | SnippetEnsemble]:
    """Our checkpoint (``.safetensors`` + ``.json``, or a run directory) or an official ``*_model_s_*.pkl``
    (see the module docstring for which config is used). Returns ``(config, net_s)`` on the CPU in eval mode.
    ``announce_data``: log the data paths taken from a checkpoint's saved config (off where no data are read)."""
    from adplg.checkpoints.format import OFFICIAL_SUFFIXES, Checkpoint
    from adplg.models.build import build_snippet_branch
    from adplg.models.convert import load_official_checkpoint

    path = Path(model_file)
    if not path.exists():
        raise AdplgError(f"model file not found: {path}")
    if path.suffix in OFFICIAL_SUFFIXES:
        kind, state = load_official_checkpoint(path)
        if kind != "net_s":
            raise AdplgError(f"{path} is an official {kind} (branch 1) checkpoint; scoring needs the snippet branch "
                             f"(files named *_model_s_*.pkl)")
        cfg = build_config(preset or "ucf-i3d", config_file, list(overrides), training=False)
    else:
        ckpt = Checkpoint(path)  # refuses a sidecar without a 'config' mapping, naming it
        cfg = _checkpoint_config(ckpt.meta["config"], preset, config_file, overrides, ckpt.path, announce_data)
        state = ckpt.part("net_s")
        path = ckpt.path
    net_s = build_snippet_branch(cfg)
    load_weights(net_s, state, path)
    return cfg, net_s.eval()


def load_scorer(model_files: Sequence[str | Path], preset: str | None = None, config_file: str | None = None,
                overrides: Sequence[str] = (), announce_data: bool = True
                ) -> tuple[Config, SnippetBranch | SnippetEnsemble]:
    """One checkpoint (:func:`load_snippet_branch`), or several whose snippet scores are averaged (an ensemble of
    independently trained runs, e.g. several seeds). The config is the first checkpoint's; every member must take
    the same features."""
    loaded = [load_snippet_branch(f, preset, config_file, overrides, announce_data and i == 0)
              for i, f in enumerate(model_files)]
    if not loaded:
        raise AdplgError("no model file given")
    cfg = loaded[0][0]
    for f, (member_cfg, _) in zip(model_files, loaded, strict=True):
        if member_cfg.data.feature_dim != cfg.data.feature_dim:
            raise AdplgError(f"{f}: ensemble members must take the same features: expected feature_dim "
                             f"{cfg.data.feature_dim} (as {model_files[0]}), got {member_cfg.data.feature_dim}")
    if len(loaded) == 1:
        return cfg, loaded[0][1]
    return cfg, SnippetEnsemble([net for _, net in loaded]).eval()
