"""`python sht_test.py --model_file <path>`: the official command, same as `adplg test --preset sht-i3d`."""
from adplg.cli.main import legacy_entry

legacy_entry("sht-i3d", "test")
