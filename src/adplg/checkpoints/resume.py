"""Which checkpoint ``train --resume`` continues from.

A run's ``last`` checkpoint is the one to continue. When it does not verify (a kill between the two writes of its
save, a damaged file: :class:`~adplg.checkpoints.format.BrokenCheckpointError`), the run continues from the newest
full checkpoint beside it that does: normally ``previous``, which every save of ``last`` keeps until the new pair
verifies (see :mod:`adplg.checkpoints.format`). A warning names what was skipped and from which step training
repeats. When no full checkpoint verifies, the error gives the command that starts the run over in a new run
directory (``train --run_dir`` on the old one refuses: it holds a run).

A checkpoint named explicitly (not a run's ``last``) is used as given or refused: the message names the ones that do
verify, and the user chooses.
"""

from __future__ import annotations

import logging
from pathlib import Path

from adplg.checkpoints.format import LAST, BrokenCheckpointError, Checkpoint, checkpoint_file, verified_checkpoints

log = logging.getLogger("adplg")


def checkpoint_to_resume(given: Path | str) -> Checkpoint:
    """The checkpoint a resume of ``given`` (a run directory or a checkpoint file) continues from: ``given`` itself
    when it verifies; for a run's ``last`` that does not, the newest full checkpoint in the same folder that does
    (logged as a warning naming both). Raises :class:`~adplg.errors.AdplgError` when nothing can be resumed."""
    path = checkpoint_file(given)
    try:
        return Checkpoint(Path(given))
    except BrokenCheckpointError as exc:
        if path.stem != LAST:
            raise
        broken = exc
    ckpt = newest_resumable(path.parent, exclude=path)
    if ckpt is None:
        raise broken
    step = ckpt.meta["step"]
    log.warning("%s cannot be resumed: %s. Resuming from %s (step %s) instead, the newest full checkpoint beside it "
                "that verifies; the steps after %s are trained again", path, broken.reason, ckpt.path, step, step)
    return ckpt


def newest_resumable(folder: Path, exclude: Path | None = None) -> Checkpoint | None:
    """The newest full checkpoint in ``folder`` (other than ``exclude``) that passes every check of
    :class:`Checkpoint` (the sha256, and the contents of a legacy pair, which the cheap listing of
    :func:`verified_checkpoints` skips), or None. Loads the candidates newest first until one verifies."""
    for candidate in verified_checkpoints(folder, exclude=exclude):
        if candidate.full:
            try:
                return Checkpoint(candidate.path)
            except BrokenCheckpointError:
                continue
    return None
