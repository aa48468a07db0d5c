"""Usability: wrong feature roots, batch sizes, misspelt keys and presets, periodic ``last`` checkpoints, the key
listing. Each error must say what to change."""

import json
import shutil

import numpy as np
import pytest
import torch

from adplg.checkpoints.format import Checkpoint
from adplg.cli.main import main
from adplg.config import Config, build_config, config_reference
from adplg.data.datasets import build_test_set, build_train_set
from adplg.data.lists import MISSING_SHOWN, MissingFilesError, read_list
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.errors import AdplgError, DataValidationError
from adplg.preset_files import load_preset
from adplg.training.engine import Trainer, create_run_dir


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Synthetic UCF data (2 crops per video) whose lists name the folder it was written to (``orig``, like the
    authors' absolute paths), moved to ``moved``: ``moved/train/<Class>/...`` and ``moved/test/<Class>/...``."""
    base = tmp_path_factory.mktemp("ucf")
    generate_synthetic_ucf(base / "orig", num_train_normal=6, num_train_abnormal=6, num_test_normal=3,
                           num_test_abnormal=3, max_snippets=60, seed=1)
    shutil.move(base / "orig", base / "moved")
    return base / "moved"


def _cfg(root, *overrides):
    return build_config("demo-cpu-small", overrides=[f"data.list_dir={root}", "train.progress=false",
                                                     "train.batch_size=4", *overrides])


# ---------------------------------------------------------------------------------------------- 1. feature roots
def test_one_feature_root_for_separate_train_and_test_folders_says_which_root_to_set(moved):
    with pytest.raises(MissingFilesError) as exc:
        build_train_set(_cfg(moved, f"data.feature_root={moved}"), progress=False)
    text = str(exc.value)
    assert len(exc.value.problems) == 24  # every problem is kept for programs (adplg doctor)
    assert text.startswith("training features: 24 problem(s); 24 of 24 feature files not found")
    assert text.count("hint:") == 1 and text.count(f"set data.train_root={moved / 'train'}") == 1
    # one example: the path as written in the list, the list file, and the path looked up
    assert f"list file {moved / 'UCF_Train.list'}" in text and "'" + str(moved.parent / "orig" / "train") in text
    assert f"-> {moved}/" in text and "separate train and test folders need data.train_root and data.test_root" in text
    assert text.count(": feature file not found") == MISSING_SHOWN
    assert f"... and {24 - MISSING_SHOWN} more feature files not found" in text

    # train fixed; the test list still points into the training folder
    with pytest.raises(MissingFilesError, match=f"set data.test_root={moved / 'test'}"):
        build_test_set(_cfg(moved, f"data.feature_root={moved / 'train'}"), progress=False)
    cfg = _cfg(moved, f"data.train_root={moved / 'train'}", f"data.test_root={moved / 'test'}")
    assert len(build_train_set(cfg, progress=False).items) == 24
    assert len(build_test_set(cfg, progress=False).videos) == 6


def test_feature_root_hint_without_a_folder_to_suggest(moved, tmp_path):
    # no root at all: the authors' paths are used as written; nothing near them holds the files
    with pytest.raises(MissingFilesError) as exc:
        build_test_set(_cfg(moved), progress=False)
    text = str(exc.value)
    assert "are used as written (no root is set)" in text
    assert ("If this list's features are in a folder of their own, set data.test_root to it (e.g. "
            "data.test_root=") in text


def test_feature_root_hint_on_the_command_line(moved, capsys):
    """``python ucf_main.py --feature_root DIR`` with UCF's separate train/test folders."""
    code = main(["train", "--preset", "demo-cpu-small", "--list_dir", str(moved), "--feature_root", str(moved),
                 "train.batch_size=4", "train.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("hint:") == 1 and f"set data.train_root={moved / 'train'}" in err
    assert err.count("not found (expected") == MISSING_SHOWN and "Traceback" not in err


def test_folder_list_with_many_missing_files(tmp_path):
    f = tmp_path / "videos.csv"
    f.write_text("video,label\n" + "".join(f"v{i},{i % 2}\n" for i in range(8)))
    np.save(tmp_path / "v0.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(MissingFilesError) as exc:
        read_list(f, "folder", root_key="data.train_root")
    text = str(exc.value)
    assert "7 of 8 feature files not found" in text and f"... and {7 - MISSING_SHOWN} more" in text
    assert f"looked up as {tmp_path}/<video>.npy: e.g. video 'v1' -> {tmp_path / 'v1.npy'}" in text
    assert "set data.train_root to it" in text and len(exc.value.problems) == 7
    # a few missing files among many: every one is listed, no hint
    for i in range(1, 7):
        np.save(tmp_path / f"v{i}.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(DataValidationError) as exc:
        read_list(f, "folder", root_key="data.train_root")
    assert not isinstance(exc.value, MissingFilesError) and "hint" not in str(exc.value)


# ---------------------------------------------------------------------------------------------- 2. batch size
def test_batch_size_error_suggests_the_fix(moved):
    cfg = _cfg(moved, f"data.train_root={moved / 'train'}", "train.batch_size=32")
    with pytest.raises(AdplgError) as exc:
        build_train_set(cfg, progress=False)
    assert str(exc.value) == (f"training list {moved / 'UCF_Train.list'}: 12 normal crops, but train.batch_size=32 "
                              f"normal crops are drawn per step: set train.batch_size=12 (or lower), or add more "
                              f"normal videos to the list")


# ---------------------------------------------------------------------------------------------- 4. save_every
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = generate_synthetic_ucf(tmp_path_factory.mktemp("syn"), num_train_normal=8, num_train_abnormal=8,
                               num_test_normal=2, num_test_abnormal=2, max_snippets=80, seed=1)
    cfg = _cfg(d.root)
    return d, build_train_set(cfg, progress=False), build_test_set(cfg, progress=False)


def _interrupt_at(monkeypatch, step):
    original = Trainer.train_step

    def train_step(self, s):
        if s == step:
            raise KeyboardInterrupt
        return original(self, s)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_last_is_saved_every_save_every_steps_and_resumes_identically(data, tmp_path, monkeypatch):
    d, train, test = data
    cfg = _cfg(d.root, f"output_dir={tmp_path}", "train.num_iters=10", "train.warm_up=2", "train.eval_every=100",
               "train.save_every=3")
    assert build_config("ucf-i3d").train.save_every == 500
    straight = Trainer(cfg, train, test, create_run_dir(cfg, tmp_path / "a"))
    straight.fit()

    run = create_run_dir(cfg, tmp_path / "b")
    _interrupt_at(monkeypatch, 8)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, train, test, run).fit()
    monkeypatch.undo()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.json", "last.safetensors"]
    ckpt = Checkpoint(run)
    assert ckpt.meta["step"] == 6  # the last multiple of save_every before the interruption, with no evaluation
    resumed = Trainer(cfg, train, test, run)
    resumed.resume(ckpt)
    assert resumed.step == 6
    resumed.fit()
    for net in ("net_s", "net_v"):
        a, b = getattr(straight, net).state_dict(), getattr(resumed, net).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), net
    assert torch.equal(straight.plg.buffer, resumed.plg.buffer)


def test_interrupted_command_resumes_from_the_periodic_last(data, tmp_path, monkeypatch):
    d, _, _ = data
    argv = ["train", "--preset", "demo-cpu-small", "--list_dir", str(d.root), "train.progress=false",
            "train.batch_size=4", "train.num_iters=6", "train.warm_up=2", "train.eval_every=100", "train.save_every=2"]
    _interrupt_at(monkeypatch, 4)
    assert main([*argv, "--run_dir", str(tmp_path / "run")]) == 130
    monkeypatch.undo()
    assert Checkpoint(tmp_path / "run").meta["step"] == 2  # saved at 2; interrupted at 4
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    assert Checkpoint(tmp_path / "run").meta["step"] == 6
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["last"]["step"] == 6


# ---------------------------------------------------------------------------------------------- 5. did you mean
@pytest.mark.parametrize("override, message", [
    ("train.num_iter=5", "unknown key train.num_iter (did you mean train.num_iters?)"),
    ("plg.histroy=3", "unknown key plg.histroy (did you mean plg.history?)"),
    ("data.layout.knd=spread", "unknown key data.layout.knd (did you mean data.layout.kind?)"),
    ("trian.seed=1", "unknown key trian (did you mean train?)"),
    ("train.history=4", "unknown key train.history (did you mean plg.history?)"),
    ("train.xyzzy=1", "unknown key train.xyzzy (`adplg config` lists every key)"),
])
def test_misspelt_keys_get_a_suggestion(override, message):
    with pytest.raises(AdplgError) as exc:
        build_config("ucf-i3d", overrides=[override])
    assert message in str(exc.value).splitlines()[1]


def test_misspelt_preset_gets_a_suggestion(capsys):
    with pytest.raises(AdplgError, match=r"unknown preset 'ucf-i3' \(did you mean 'ucf-i3d'\?\); expected one of"):
        load_preset("ucf-i3")
    assert main(["train", "--preset", "xd-clp"]) == 2
    assert "unknown preset 'xd-clp' (did you mean 'xd-clip'?)" in capsys.readouterr().err
    with pytest.raises(AdplgError) as exc:
        build_config("zzzz")
    assert "did you mean" not in str(exc.value)


# ---------------------------------------------------------------------------------------------- 6. config_reference
def _leaves(mapping, prefix=""):
    for key, value in mapping.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_config_reference_lists_every_key():
    rows = config_reference()
    keys = [k for k, _, _ in rows]
    assert keys == list(_leaves(Config().to_dict()))  # every key once, in declaration order
    assert all(isinstance(desc, str) and desc for _, _, desc in rows)
    ref = {k: (v, desc) for k, v, desc in rows}
    assert ref["train.num_iters"] == (20000, "training steps")
    assert ref["data.layout.kind"][0] == "uniform" and ref["model.windows"][0] == (2, 4, 6, 8)
    assert "train --resume" in ref["train.save_every"][1] and ref["train.save_every"][0] == 500
    assert "[--pl_his_num]" in ref["plg.history"][1]
    small = {k: v for k, v, _ in config_reference("demo-cpu-small")}
    assert small["train.num_iters"] == 600 and small["model.model_dim"] == 128 and small["data.test_crops"] == 2
    with pytest.raises(AdplgError, match="did you mean 'demo-cpu-small'"):
        config_reference("demo-cpu")
