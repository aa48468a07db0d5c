"""TensorBoard logging of a run (``train.tensorboard``): the training losses and the evaluation metrics as scalars in
``<run_dir>/tensorboard``, written with ``torch.utils.tensorboard.SummaryWriter``; the ``tensorboard`` package is
the optional extra ``adplg[tensorboard]``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from adplg.errors import AdplgError

TENSORBOARD_FOLDER = "tensorboard"  # inside the run directory


class TensorBoardLog:
    """Scalars of one run, under tags ``<group>/<name>`` (``train/loss_v``, ``eval/auc``) at the training step."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch's wrapper needs the tensorboard package for its event files
            raise AdplgError(f"train.tensorboard is on, but TensorBoard cannot be imported ({exc}); expected the "
                             f"tensorboard package: pip install 'adplg[tensorboard]', or set "
                             f"train.tensorboard=false") from None
        self.folder = Path(run_dir) / TENSORBOARD_FOLDER
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def scalars(self, group: str, values: Mapping[str, object], step: int) -> None:
        """Log every finite number of ``values`` (others, e.g. None or a per-class dict, are skipped)."""
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"{group}/{name}", value, step)

    def flush(self) -> None:
        """Write what is buffered to the event file."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
