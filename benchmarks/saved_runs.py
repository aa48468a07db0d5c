"""Trained models as their runs' last evaluation scored them, from a trainer just trained or from run directories
on disk (``--runs`` of ``benchmarks/online_auc.py``).

A run directory (``create_run_dir``: ``<output_dir>/<name>-seed<seed>-<time>``) keeps its resolved config
(``config.yaml``), its checkpoints (``checkpoints/last`` and ``checkpoints/step_<N>`` at every evaluation) and each
evaluation's scores (``evals/step_<N>/scores.npz``). A finished run's ``checkpoints/last`` is its step
``train.num_iters``, which is always evaluated (past warm-up), and its ``net_s`` is the snippet branch that
evaluation scored with: the weight average when ``train.ema_decay`` / ``train.average_from`` is set
(``Trainer.scoring_net``), the same weights ``adplg test RUN_DIR`` loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from torch import nn

from adplg.checkpoints.format import RUN_CONFIG, checkpoint_file, weights_metadata
from adplg.checkpoints.load import load_snippet_branch
from adplg.config import Config
from adplg.errors import AdplgError
from adplg.runtime import resolve_device


@dataclass(kw_only=True)
class ScoringRun:
    """One trained model as its run's last evaluation scored it: the config, the snippet branch that scored (a
    ``SnippetBranch`` or ``SnippetEnsemble``, ``[B, T, D] -> [B, T]``), its device, the run directory and the step of
    the last evaluation (whose scores are ``<run_dir>/evals/step_<step>/scores.npz``)."""

    cfg: Config
    model: nn.Module
    device: str
    run_dir: Path
    step: int


def trained_run(trainer) -> ScoringRun:
    """The run a :class:`~adplg.training.engine.Trainer` has just finished (``fit``: its last step was evaluated)."""
    return ScoringRun(cfg=trainer.cfg, model=trainer.scoring_net, device=str(trainer.device), run_dir=trainer.run_dir,
                      step=trainer.step)


def load_run(run_dir: Path, step: int) -> ScoringRun:
    """A finished run from disk (:func:`find_run` gives ``run_dir`` and ``step``): its ``checkpoints/last`` snippet
    branch (the scoring weights) with the config saved in it, on the run's ``train.device``, in eval mode."""
    cfg, model = load_snippet_branch(run_dir, announce_data=False)
    device = resolve_device(cfg.train.device)
    return ScoringRun(cfg=cfg, model=model.to(device).eval(), device=str(device), run_dir=run_dir, step=step)


def unfinished_reason(run_dir: Path, num_iters: int) -> tuple[int | None, str | None]:
    """``(step, None)`` for a finished run (its ``checkpoints/last`` is step ``num_iters`` and that step's
    ``evals/step_<step>/scores.npz`` exists), else ``(None, why not)``."""
    weights = checkpoint_file(run_dir)
    if not weights.is_file():
        return None, f"no {weights.relative_to(run_dir)}"
    try:
        step = int(weights_metadata(weights)["step"])
    except Exception as exc:  # safetensors raises its own error types; a missing step is a KeyError
        return None, f"{weights.relative_to(run_dir)} is unreadable ({type(exc).__name__}: {exc})"
    if step != num_iters:
        return None, f"its last checkpoint is step {step} of train.num_iters {num_iters} (still training, or stopped)"
    scores = run_dir / "evals" / f"step_{step}" / "scores.npz"
    if not scores.is_file():
        return None, f"no {scores.relative_to(run_dir)} (the last step's evaluation)"
    return step, None


def saved_configs(folder: Path) -> dict[Path, dict]:
    """The run directories in ``folder`` (itself, its sub-folders and theirs) by their saved ``config.yaml``."""
    found = {}
    for path in sorted({*folder.glob(RUN_CONFIG), *folder.glob(f"*/{RUN_CONFIG}"), *folder.glob(f"*/*/{RUN_CONFIG}")}):
        try:
            saved = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise AdplgError(f"{path}: expected a run's saved config (YAML), could not read it: {exc}") from None
        if not isinstance(saved, dict):
            raise AdplgError(f"{path}: expected a run's saved config (a YAML mapping), got {type(saved).__name__}")
        found[path.parent] = saved
    return found


def run_label(saved: dict) -> str:
    """``name seed S[, causal]`` of a saved config, as the lookup matches runs."""
    return (f"{saved.get('name')} seed {(saved.get('train') or {}).get('seed')}"
            + (", causal" if (saved.get("model") or {}).get("causal") else ""))


def find_run(folder: Path, *, name: str, seed: int, causal: bool) -> tuple[Path, int]:
    """The finished run in ``folder`` (searched two levels deep) whose saved config has ``name``, ``train.seed ==
    seed`` and ``model.causal == causal``, and the step of its last evaluation. Unfinished runs of that seed (killed,
    restarted or still training) are passed over with a note; none, or several finished ones, is an
    :class:`AdplgError` naming ``folder`` and what it holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AdplgError(f"--runs {folder}: expected a folder of run directories, found no such folder")
    configs = saved_configs(folder)
    wanted = f"{name} seed {seed}" + (", causal" if causal else "")
    matching = [run_dir for run_dir, saved in configs.items()
                if saved.get("name") == name and (saved.get("train") or {}).get("seed") == seed
                and bool((saved.get("model") or {}).get("causal", False)) == causal]
    if not matching:
        held = sorted({run_label(saved) for saved in configs.values()})
        raise AdplgError(f"--runs {folder}: expected a run of {wanted} (name, train.seed and model.causal of its "
                         f"config.yaml), found none; the folder holds "
                         + (f"runs of: {'; '.join(held)}" if held else "no run directories (no */config.yaml)"))
    finished, unfinished = [], []
    for run_dir in matching:
        step, why = unfinished_reason(run_dir, int(configs[run_dir]["train"]["num_iters"]))
        if step is None:
            unfinished.append(f"{run_dir.name}: {why}")
        else:
            finished.append((run_dir, step))
    if not finished:
        raise AdplgError(f"--runs {folder}: expected a finished run of {wanted}, found {len(unfinished)} unfinished: "
                         + "; ".join(unfinished))
    if len(finished) > 1:
        raise AdplgError(f"--runs {folder}: expected one finished run of {wanted}, found {len(finished)}: "
                         + ", ".join(run_dir.name for run_dir, _ in finished)
                         + " (move all but one elsewhere, or name a folder that holds one)")
    if unfinished:
        print(f"--runs {folder}: {wanted}: using {finished[0][0].name}; passed over unfinished "
              + "; ".join(unfinished), flush=True)
    return finished[0]
