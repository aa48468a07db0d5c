"""Evaluation: frame-level WSVAD metrics (AUC, AP / PR-AUC, AUC on abnormal videos, FAR, per-class AP)."""

from adplg.evaluation.metrics import frame_metrics, per_class_ap

__all__ = ["frame_metrics", "per_class_ap"]
