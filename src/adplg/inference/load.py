"""Load the scoring branch (``net_s``) with its config from any supported checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adplg.config import Config, build_config
from adplg.errors import AdplgError
from adplg.models.ensemble import SnippetEnsemble
from adplg.models.snippet_branch import SnippetBranch


def load_snippet_branch(model_file: str | Path, preset: str | None = None, config_file: str | None = None,
                        overrides: Sequence[str] = ()) -> tuple[Config, SnippetBranch]:
    """Our checkpoint (``.safetensors`` + ``.json``, or a run directory) or an official ``*_model_s_*.pkl``.

    Our checkpoints carry their config (``preset``/``config_file``/``overrides`` replace or adjust it); an official
    file has none, so its config comes from ``preset`` (default ``ucf-i3d``). Returns ``(config, net_s)`` on the CPU
    in eval mode."""
    from adplg.checkpoint import OFFICIAL_SUFFIXES, Checkpoint
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
        cfg = build_config(preset or "ucf-i3d", config_file, list(overrides))
    else:
        ckpt = Checkpoint(path)
        cfg = build_config(preset, config_file, list(overrides), base=None if preset else ckpt.meta["config"])
        state = ckpt.part("net_s")
    net_s = build_snippet_branch(cfg)
    missing, unexpected = net_s.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AdplgError(f"{path}: weights do not fit the configured snippet branch; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]} (check --preset / model.* settings)")
    return cfg, net_s.eval()


def load_scorer(model_files: Sequence[str | Path], preset: str | None = None, config_file: str | None = None,
                overrides: Sequence[str] = ()) -> tuple[Config, SnippetBranch | SnippetEnsemble]:
    """One checkpoint (:func:`load_snippet_branch`), or several whose snippet scores are averaged (an ensemble of
    independently trained runs, e.g. several seeds). The config is the first checkpoint's; every member must take
    the same features."""
    loaded = [load_snippet_branch(f, preset, config_file, overrides) for f in model_files]
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
