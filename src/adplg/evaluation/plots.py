"""Score curves with ground-truth shading (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_score_curves(path: Path, names: list[str], frame_scores: list[np.ndarray], frame_gt: list[np.ndarray],
                      title: str = "", columns: int = 2) -> Path:
    """One panel per video: frame scores [F] as a line, GT anomalies [F] (0/1) shaded. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adplg.training.checkpoint import atomic_write_bytes

    rows = max(1, int(np.ceil(len(names) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name, scores, gt in zip(axes.flat, names, frame_scores, frame_gt):
        frames = np.arange(len(scores))
        ax.fill_between(frames, 0, 1, where=np.asarray(gt) > 0, color="tab:red", alpha=0.25, step="mid",
                        label="ground truth")
        ax.plot(frames, scores, color="tab:blue", lw=1.2, label="score")
        ax.set_ylim(0, 1)
        ax.set_xlim(0, max(1, len(scores) - 1))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
    axes.flat[0].legend(loc="upper right", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
