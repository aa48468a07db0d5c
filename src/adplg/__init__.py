"""adplg: ADPLG-VAD (Yang et al., Pattern Recognition 2026) for weakly supervised video anomaly detection."""

__version__ = "0.1.0"
