"""Evaluation: frame-level WSVAD metrics (AUC, AP / PR-AUC, AUC on abnormal videos, FAR, per-class AP) and the time
to detect an anomaly at a false-alarm rate."""

from adplg.evaluation.detection import time_to_detect
from adplg.evaluation.metrics import frame_metrics, per_class_ap

__all__ = ["frame_metrics", "per_class_ap", "time_to_detect"]
