"""Snippet features from raw videos: decoding, the I3D / CLIP extractors and the ``adplg extract`` run."""
