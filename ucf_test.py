"""`python ucf_test.py --model_file <path>`: the official command, same as `adplg test --preset ucf-i3d`."""
from adplg.cli.main import legacy_entry

legacy_entry("ucf-i3d", "test")
