"""One call from a config to a trained run directory: datasets, run directory, trainer, fit (``adplg train``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adplg.config import Config, build_config


@dataclass(kw_only=True)
class TrainResult:
    """A finished run: its directory, the resolved config and the summary (last / val_selected / best_on_test)."""

    run_dir: Path
    config: Config
    summary: dict

    @property
    def checkpoint(self) -> Path:
        """The last weights (``checkpoints/last.safetensors``): pass it to :func:`adplg.load`."""
        from adplg.checkpoints.format import LAST

        return self.run_dir / "checkpoints" / f"{LAST}.safetensors"

    @property
    def metrics(self) -> dict:
        """The last evaluation's test metrics (empty without a test set)."""
        return self.summary.get("last", {}).get("test", {})


def train(config: Config | str | None = None, *, overrides: Sequence[str] = (), config_file: str | Path | None = None,
          run_dir: str | Path | None = None, resume: str | Path | None = None, evaluate: bool = True,
          on_start=None) -> TrainResult:
    """Train both branches and return the run.

    ``config``: a :class:`Config`, a preset name (``"ucf-i3d"``, see ``adplg presets``) or None for the default
    preset; ``overrides`` are dotted ``"section.key=value"`` strings applied on top (``"train.seed=1"``). ``resume``:
    a run directory (or full checkpoint) to continue bit for bit, with its saved config; a run whose ``last``
    checkpoint does not verify (a save was killed) continues from the newest full one that does, with a warning
    (:func:`adplg.checkpoints.resume.checkpoint_to_resume`). ``evaluate=False`` trains without a test set.
    ``on_start(run_dir)`` is called once the run directory exists."""
    from adplg.checkpoints.resume import checkpoint_to_resume
    from adplg.data.datasets import build_test_set, build_train_set, data_manifest
    from adplg.training.engine import Trainer, create_run_dir
    from adplg.training.teacher import check_teacher

    ckpt = None
    if resume is not None:
        ckpt = checkpoint_to_resume(resume)
        cfg = build_config(base=ckpt.meta["config"], overrides=list(overrides))
        directory = ckpt.path.parent.parent
    elif isinstance(config, Config):
        cfg = build_config(base=config.to_dict(), config_file=config_file, overrides=list(overrides))
    else:
        cfg = build_config(config or "ucf-i3d", config_file, list(overrides))
    check_teacher(cfg.train.teacher)
    progress = cfg.train.progress
    train_set = build_train_set(cfg, progress=progress)
    test_set = build_test_set(cfg, progress=progress) if evaluate else None
    if ckpt is None:
        directory = create_run_dir(cfg, run_dir)
    trainer = Trainer(cfg, train_set, test_set, directory, manifest=data_manifest(cfg, train_set, test_set))
    if ckpt is not None:
        trainer.resume(ckpt)
    if on_start is not None:
        on_start(directory)
    return TrainResult(run_dir=directory, config=cfg, summary=trainer.fit())
