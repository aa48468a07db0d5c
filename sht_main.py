"""`python sht_main.py --thre_pesudo_a ... --warm_up ...`: the official command, same as
`adplg train --preset sht-i3d`."""
from adplg.cli.main import legacy_entry

legacy_entry("sht-i3d", "train")
