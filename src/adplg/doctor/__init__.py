"""``adplg doctor``: checks of a dataset or an extraction folder, and their report."""
