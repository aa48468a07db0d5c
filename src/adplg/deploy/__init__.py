"""Deployment: the scoring branch exported to ONNX / TorchScript, and the check of an export against the model."""
