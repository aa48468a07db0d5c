import pytest

from adplg.config import build_config
from adplg.errors import AdplgError
from adplg.preset_files import preset_names

PAPER = {"ucf-i3d": (0.25, 0.4, 3, 1000), "xd-i3d": (0.15, 0.5, 5, 1500), "sht-i3d": (0.2, 0.4, 4, 1000)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_presets_hold_the_paper_settings(name):
    cfg = build_config(name)
    assert (cfg.plg.mean_threshold, cfg.plg.var_threshold, cfg.plg.history, cfg.train.warm_up) == PAPER[name]
    assert cfg.train.optimizer == "adam" and cfg.train.weight_decay == 0.005
    assert (cfg.train.lr_v, cfg.train.lr_s, cfg.train.num_iters) == (1e-4, 1e-3, 20000)


def test_all_presets_validate():
    assert {"ucf-i3d", "xd-i3d", "sht-i3d", "ucf-clip", "xd-clip", "demo-cpu-small"} <= set(preset_names())
    for name in preset_names():
        build_config(name)


def test_dotted_overrides_are_typed():
    cfg = build_config("xd-i3d", overrides=["train.seed=7", "plg.history=4", "data.feature_root=/x"])
    assert cfg.train.seed == 7 and cfg.plg.history == 4 and cfg.data.feature_root == "/x"


@pytest.mark.parametrize("override, needle", [("train.sede=1", "train.sede"), ("train.seed=abc", "train.seed"),
                                              ("plg.history=1", "plg.history"), ("seed", "section.key=value")])
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(AdplgError, match=needle.replace(".", r"\.")):
        build_config("ucf-i3d", overrides=[override])


def test_unknown_preset():
    with pytest.raises(AdplgError, match="unknown preset 'nope'"):
        build_config("nope")
