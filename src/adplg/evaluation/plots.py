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
    return save_png(fig, path)


def save_png(fig, path: Path, dpi: int = 90) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    from adplg.io import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def plot_timeline(path: Path, name: str, times_s: np.ndarray, frame_scores: np.ndarray,
                  alert_spans_s: list[tuple[float, float]], on_threshold: float, off_threshold: float,
                  gt_spans_s: list[tuple[float, float]] | None = None) -> Path:
    """One video's score curve over time: ``frame_scores [N]`` at ``times_s [N]`` seconds, the alert thresholds,
    alert segments shaded orange and (when given) annotated anomalies shaded grey. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 2.8))
    for i, (start, end) in enumerate(gt_spans_s or []):
        ax.axvspan(start, end, color="0.6", alpha=0.35, lw=0, label="annotated anomaly" if i == 0 else None)
    for i, (start, end) in enumerate(alert_spans_s):
        ax.axvspan(start, end, ymin=0.0, ymax=0.06, color="tab:orange", alpha=0.9, lw=0,
                   label="alert" if i == 0 else None)
        ax.axvspan(start, end, color="tab:orange", alpha=0.15, lw=0)
    ax.plot(times_s, frame_scores, color="tab:blue", lw=1.2, label="score")
    ax.axhline(on_threshold, color="tab:red", ls="--", lw=0.8, label=f"on {on_threshold:.3f}")
    if off_threshold != on_threshold:
        ax.axhline(off_threshold, color="tab:red", ls=":", lw=0.8, label=f"off {off_threshold:.3f}")
    ax.set_ylim(0, 1)
    ax.set_xlim(0, max(float(times_s[-1]) if len(times_s) else 0.0, 1e-6))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("anomaly score")
    ax.set_title(name, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, borderaxespad=0)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def plot_test_examples(path: Path, test, snippet_scores: list[np.ndarray], title: str = "", abnormal: int = 4,
                       normal: int = 2) -> Path:
    """Frame scores against the GT of the first ``abnormal`` abnormal and ``normal`` normal videos of a test set
    (``snippet_scores``: per video ``[T_v]``, in the test set's order)."""
    labels = test.video_labels
    shown = ([v for v in range(len(test.videos)) if labels[v] == 1][:abnormal]
             + [v for v in range(len(test.videos)) if labels[v] == 0][:normal])
    gt = test.gt
    frames = [test.layout.expand(snippet_scores[v], test.video_frames[v] if test.video_frames else None)
              for v in shown]
    return plot_score_curves(path, [test.videos[v].name for v in shown], frames,
                             [gt.labels[gt.offsets[v]:gt.offsets[v + 1]] for v in shown], title=title)
