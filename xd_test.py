"""`python xd_test.py --model_file <path>`: the official command, same as `adplg test --preset xd-i3d`."""
from adplg.cli.main import legacy_entry

legacy_entry("xd-i3d", "test")
