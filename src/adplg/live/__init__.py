"""Live scoring (``adplg watch``): frame sources, the online scorer, alert outputs and the watch loop."""
