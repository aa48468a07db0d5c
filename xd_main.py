"""`python xd_main.py --thre_pesudo_a ... --warm_up ...`: the official command, same as
`adplg train --preset xd-i3d`."""
from adplg.cli.main import legacy_entry

legacy_entry("xd-i3d", "train")
