"""The improved presets of every dataset (issue 29): ``base:`` composition, the faithful presets unchanged, what each
improved preset changes, ``adplg presets`` / ``--diff``, ``--improved`` in the seed commands, and each ``-cpu`` twin
trained a few steps on a tiny synthetic set of its dataset's layout."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import adplg.preset_files
from adplg.cli.common import chosen_preset, config_overrides
from adplg.cli.main import legacy_parser, main, run
from adplg.config import Config, build_config
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.demo import torch_threads, train_and_compare
from adplg.errors import AdplgError
from adplg.preset_diff import (
    SIZE_AND_SCHEDULE_KEYS,
    faithful_twin,
    flat_settings,
    improved_preset,
    preset_changes,
    split_changes,
)
from adplg.preset_files import load_preset, preset_lineage, preset_names

# dataset -> (PLG thresholds and history, the paper's warm-up)
FAITHFUL = {"ucf-i3d": (0.25, 0.4, 3, 1000), "xd-i3d": (0.15, 0.5, 5, 1500), "sht-i3d": (0.2, 0.4, 4, 1000),
            "ucf-clip": (0.25, 0.4, 3, 1000), "xd-clip": (0.15, 0.5, 5, 1500)}
OPTIONS = {"model.snippet_members": 3, "model.dropout": 0.0, "model.cls_dropout": 0.0, "loss.smooth_axis": "time",
           "loss.sparsity_axis": "time", "eval.smooth_window": 9}
CPU_PRESETS = [f"{name}-improved-cpu" for name in FAITHFUL]


def test_faithful_presets_resolve_as_before():
    """The faithful presets (and the demo / R1 ones) resolve to the configs recorded before the improved presets
    and ``base:`` existed; a key added since must hold its default (a new option is off)."""
    recorded = json.loads((Path(__file__).parent / "faithful_presets.json").read_text())
    now_defaults = flat_settings(Config())
    for name, own in recorded["presets"].items():
        expected = {**recorded["defaults"], **own}
        resolved = flat_settings(build_config(name))
        for key, value in resolved.items():
            assert value == expected.get(key, now_defaults[key]), (name, key)
        assert set(expected) <= set(resolved), name
    assert legacy_parser("ucf_main.py", "ucf-i3d", "train").parse_args([]).preset == "ucf-i3d"


def test_every_preset_is_named_after_its_file_and_validates():
    for name in preset_names():
        assert build_config(name).name == name  # a preset with a base sets its own name


@pytest.mark.parametrize("faithful", sorted(FAITHFUL))
def test_improved_presets_add_the_options_and_keep_the_data_and_thresholds(faithful):
    improved, cpu = f"{faithful}-improved", f"{faithful}-improved-cpu"
    assert preset_lineage(cpu) == [cpu, improved, faithful]
    base, paper, small = build_config(faithful), build_config(improved), build_config(cpu)
    thresholds = (*FAITHFUL[faithful][:3], FAITHFUL[faithful][3])
    assert (paper.plg.mean_threshold, paper.plg.var_threshold, paper.plg.history, paper.train.warm_up) == thresholds
    assert (small.plg.mean_threshold, small.plg.var_threshold, small.plg.history) == thresholds[:3]
    assert paper.data == base.data == small.data and paper.eval.primary == base.eval.primary
    options, schedule = split_changes(preset_changes(improved))
    warm_up = base.train.warm_up
    assert {key: new for key, _, new in options} == {**OPTIONS, "train.average_from": warm_up}
    assert {key: new for key, _, new in schedule} == {"train.num_iters": warm_up + 1000, "train.eval_every": 250}
    # the -cpu twin: the same options, demo-cpu-small's widths and learning rates, a short averaged schedule
    options_cpu, size = split_changes(preset_changes(cpu))
    # averaged over the second half of branch 2's steps (a short schedule is still learning at its end)
    half_way = small.train.warm_up + (small.train.num_iters - small.train.warm_up) // 2
    assert {key: new for key, _, new in options_cpu} == {**OPTIONS, "train.average_from": half_way}
    demo = flat_settings(build_config("demo-cpu-small"))
    own = flat_settings(small)
    assert all(own[key] == demo[key] for key in SIZE_AND_SCHEDULE_KEYS if key.startswith("model.")), cpu
    assert (small.train.batch_size, small.train.lr_v, small.train.lr_s) == (16, 1e-3, 3e-4)
    assert small.train.warm_up == warm_up // 5 and small.train.num_iters == small.train.warm_up + 400
    assert {key for key, _, _ in size} <= set(SIZE_AND_SCHEDULE_KEYS)


def test_the_faithful_twin_has_the_size_and_schedule_and_none_of_the_options():
    faithful, overrides = faithful_twin("xd-i3d-improved-cpu")
    assert faithful == "xd-i3d"
    twin, improved = flat_settings(build_config(faithful, overrides=overrides)), flat_settings(
        build_config("xd-i3d-improved-cpu"))
    plain = flat_settings(build_config("xd-i3d"))
    differ = {key for key in twin if key not in ("name", "description") and twin[key] != improved[key]}
    assert differ == {*OPTIONS, "train.average_from"}
    assert all(twin[key] == plain[key] for key in differ)
    assert twin["name"] == "xd-i3d-twin" and twin["train.num_iters"] == 700
    with pytest.raises(AdplgError, match="no faithful twin"):
        faithful_twin("ucf-i3d")


# ------------------------------------------------------------------------------------------------- base: composition
def _presets(folder: Path, files: dict[str, dict]) -> None:
    for name, content in files.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(content))


def test_base_merges_the_base_first_and_names_bad_bases(tmp_path, monkeypatch):
    monkeypatch.setattr(adplg.preset_files, "preset_folder", lambda: tmp_path)
    _presets(tmp_path, {
        "root": {"name": "root", "train": {"seed": 1, "warm_up": 10}, "model": {"dropout": 0.5}},
        "child": {"name": "child", "base": "root", "train": {"seed": 2}},
        "grandchild": {"name": "grandchild", "base": "child", "model": {"dropout": 0.0}},
        "loop-a": {"base": "loop-b"}, "loop-b": {"base": "loop-a"}, "self": {"base": "self"},
        "typo": {"base": "rot"}, "listed": {"base": ["root"]},
    })
    assert load_preset("grandchild") == {"name": "grandchild", "train": {"seed": 2, "warm_up": 10},
                                         "model": {"dropout": 0.0}}
    assert preset_lineage("grandchild") == ["grandchild", "child", "root"]
    with pytest.raises(AdplgError, match=r"cycle \(loop-a -> loop-b -> loop-a\)"):
        load_preset("loop-a")
    with pytest.raises(AdplgError, match=r"cycle \(self -> self\)"):
        load_preset("self")
    with pytest.raises(AdplgError, match=r"preset 'typo' \(presets/typo.yaml\): base: unknown preset 'rot' \(did "
                                         r"you mean 'root'\?\)"):
        load_preset("typo")
    with pytest.raises(AdplgError, match=r"base: expected the name of another preset, got \['root'\]"):
        load_preset("listed")


# ---------------------------------------------------------------------------------------------------- command line
def test_presets_lists_what_each_improved_preset_changes(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    table, _, changes = out.partition("\n\n")
    assert all(f"\n{name} " in table for name in CPU_PRESETS)
    for faithful in FAITHFUL:
        block = re.split(r"\n  (?=\S)", changes.split(f"  {faithful}-improved (against {faithful}):\n", 1)[1])[0]
        assert "model.snippet_members 1->3" in block and "loss.smooth_axis batch->time" in block, faithful
        assert "size and schedule: train.num_iters 20000->" in " ".join(block.split())
    assert main(["presets", "--diff", "ucf-i3d-improved-cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# ucf-i3d-improved-cpu against ucf-i3d:")
    assert "model.model_dim        1024 -> 128" in lines and "eval.smooth_window     0 -> 9" in lines
    assert main(["presets", "--diff", "ucf-i3d-improved-cpu", "--against", "ucf-i3d-improved"]) == 0
    assert "model.snippet_members" not in capsys.readouterr().out
    assert main(["presets", "--against", "ucf-i3d"]) == 2
    assert "expected --diff" in capsys.readouterr().err


def test_improved_flag_picks_the_improved_preset_and_official_flags_still_override(capsys):
    args = legacy_parser("xd_main.py", "xd-i3d", "train").parse_args(["--improved", "--warm_up", "700"])
    assert chosen_preset(args) == "xd-i3d-improved"
    cfg = build_config(chosen_preset(args), overrides=config_overrides(args))
    assert cfg.train.warm_up == 700 and cfg.model.snippet_members == 3 and cfg.plg.history == 5
    args = legacy_parser("ucf_main.py", "ucf-i3d", "train").parse_args(["--preset", "ucf-clip", "--improved"])
    assert chosen_preset(args) == "ucf-clip-improved" and improved_preset("ucf-clip-improved") == "ucf-clip-improved"
    assert main(["train", "--preset", "demo-cpu-small", "--improved"]) == 2
    assert "--improved: preset 'demo-cpu-small' has no improved preset" in capsys.readouterr().err
    assert main(["test", "--improved", "--model_file", "none.pkl"]) == 2
    assert "--improved: expected a --preset to improve" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the -cpu twins trained a few steps
TINY = {"num_train_normal": 4, "num_train_abnormal": 4, "num_test_normal": 2, "num_test_abnormal": 2,
        "feature_dim": 16, "max_snippets": 40}
# small checkpoints (positional rows for 64 snippets, not 6750) and one evaluation, at the last step
TINY_OVERRIDES = ["train.batch_size=4", "data.num_segments=16", "model.max_len=64", "train.eval_every=100"]


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_cpu_twin_trains_on_a_tiny_set_of_its_layout(preset, tmp_path):
    from adplg.checkpoints.load import load_scorer

    crops = build_config(preset).data.train_crops
    with torch_threads(1):
        result = train_and_compare(tmp_path, seed=0, num_iters=6, preset=preset, overrides=TINY_OVERRIDES,
                                   data={**TINY, "crops": crops})
    cfg = result.trainer.cfg
    like = {"xd": "xd", "sht": "sht"}.get(preset.split("-")[0], "ucf")
    assert json.loads((tmp_path / "data" / "synthetic.json").read_text())["like"] == like
    assert (cfg.model.snippet_members, cfg.train.num_iters, cfg.train.warm_up, cfg.train.average_from) == (3, 6, 2, 2)
    primary = cfg.eval.primary
    assert primary == ("pr_auc" if like == "xd" else "auc")
    assert all(math.isfinite(result.ours[key]) for key in (primary, "auc", "auc_abnormal", "far"))
    scorer_cfg, net = load_scorer([result.trainer.run_dir / "checkpoints" / "last.safetensors"])
    assert scorer_cfg.name == preset and len(net.members) == 3
    with torch.no_grad():
        scores = net(torch.from_numpy(result.test.crops(0)[:, :8]))
    assert scores.shape == (crops, 8) and np.isfinite(scores.numpy()).all()


def test_seed_commands_train_and_test_an_improved_preset(tmp_path):
    data = generate_synthetic_ucf(tmp_path / "data", **TINY, crops=10)
    common = ["--list_dir", str(data.root), "--num_iters", "6", "--warm_up", "2", "--output_dir", str(tmp_path),
              "train.progress=false", *TINY_OVERRIDES]
    train = legacy_parser("ucf_main.py", "ucf-i3d", "train")
    with torch_threads(1):
        assert run(train, ["--preset", "ucf-i3d-improved-cpu", "--run_dir", str(tmp_path / "run"), *common,
                           "data.feature_dim=16"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["name"] == "ucf-i3d-improved-cpu" and saved["train"]["warm_up"] == 2
    assert saved["model"]["snippet_members"] == 3
    test = legacy_parser("ucf_test.py", "ucf-i3d", "test")
    with torch_threads(1):
        assert run(test, ["--improved", "--model_file", str(tmp_path / "run"), "--list_dir", str(data.root),
                          "--out", str(tmp_path / "test"), "--no_plot", "train.progress=false"]) == 0
    results = json.loads((tmp_path / "test" / "results.json").read_text())
    assert results["config"]["eval"]["smooth_window"] == 9 and math.isfinite(results["metrics"]["auc"])
