"""Checkpoints: the ``.safetensors`` + ``.json`` sidecar format, and loading the scoring branch from any checkpoint."""
