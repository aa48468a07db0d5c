"""Frozen feature-extraction backbones, loadable from their public checkpoints: ``i3d`` (Inception-I3D, RGB,
1024-d snippet features) and ``clip`` (the CLIP ViT image tower, 512-d frame features; imports transformers).
``weights`` reads and checks their weight files."""
