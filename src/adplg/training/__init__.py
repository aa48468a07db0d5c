"""Training: the two-branch loop, its sampler, pseudo-labels and augmentations, and the run it writes."""
