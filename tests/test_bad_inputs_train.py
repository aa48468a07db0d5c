"""The bad-input table (issue 14), configuration, train and checkpoint cases (`adplg train`, `adplg test`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from bad_inputs_harness import (  # noqa: F401 - base_checkpoint: the fixture
    PASSWD_LIKE,
    CaseTable,
    Workspace,
    bad_crc_safetensors,
    base_checkpoint,
    do,
    truncated_npy,
)

table = CaseTable()
case, cases = table.case, table.cases


# ---- configuration (every command that takes one reads it the same way; train and test here)
cases("train-override-malformed", ["train.seed=[1", "train..seed=1", "=3", "train.seed"],
      lambda w, v: (w.train(v), [repr(v)]))
cases("train-override-bad-number", ["train.lr_v=-1", "train.lr_s=0", "train.sch_step=0", "train.sch_gamma=-0.5",
                              "train.weight_decay=-1", "train.lr_v=.nan", "train.batch_size=0", "train.seed=abc",
                              "train.num_iters=-3", "eval.smooth_window=-1", "data.feature_dim=0"],
      lambda w, v: (w.train(v), [v.split("=")[0]]))
cases("train-override-unknown-key", ["train.sed=1", "trian.seed=1", "data.listdir=x"],
      lambda w, v: (w.train(v), [{"trian.seed=1": "trian"}.get(v, v.split("=")[0])]))
case("train-warm-up-not-below-num-iters")(lambda w: (w.train("train.warm_up=5", "train.num_iters=5"),
                                               ["train.warm_up", "num_iters"]))
case("train-unknown-preset")(lambda w: (["train", "--preset", "ucf-i3dd"], ["ucf-i3dd"]))
cases("train-config-file", ["missing", "folder", "list", "number", "invalid-yaml", "binary"],
      lambda w, v: (w.train("--config", str(_config_file(w, v))), [str(w.root / "user.yaml")]))


def _config_file(w: Workspace, kind: str) -> Path:
    path = w.root / "user.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind != "missing":
        w.write("user.yaml", {"list": "- 1\n- 2\n", "number": "3\n", "invalid-yaml": "train: [1\n",
                              "binary": b"\x80\x81\xfe\x00" * 8}[kind])
    return path


# ---- train: data and outputs
case("train-output-dir-is-a-file")(lambda w: (w.train(f"--output_dir={w.write('runs', 'x')}"), [str(w.root / "runs")]))
case("train-run-dir-is-a-file")(lambda w: (w.train("--run_dir", str(w.write("run.txt", "x"))), ["run.txt"]))
case("train-resume-missing")(lambda w: (w.train("--resume", str(w.root / "nope")), [str(w.root / "nope")]))
case("train-list-dir-missing")(lambda w: (w.train(f"data.list_dir={w.root / 'nodata'}"), [str(w.root / "nodata")]))
case("train-list-not-a-list")(lambda w: (w.train(f"data.train_list={w.write('passwd', PASSWD_LIKE)}"), ["passwd"]))
case("train-feature-truncated")(lambda w: (do(truncated_npy(w.train_video()), w.train()), [w.train_video().name]))
case("train-feature-wrong-dim")(
    lambda w: (np.save(w.train_video(), np.zeros((20, 32), np.float32)) or w.train(), [w.train_video().name, "32"]))
case("train-feature-nan")(
    lambda w: (np.save(w.train_video(), np.full((20, 64), np.nan, np.float32)) or w.train(), [w.train_video().name]))
case("train-feature-not-npy")(lambda w: (do(w.train_video().write_text("hello"), w.train()), [w.train_video().name]))
case("train-batch-too-large")(lambda w: (w.train("train.batch_size=1000"), ["batch_size"]))
case("train-annotation-past-end")(lambda w: (w.edit_annotations(
    lambda lines: [line.replace(" 343 443 ", " 343 99999 ") for line in lines]) or w.train(), ["Shoplifting001"]))
case("train-annotation-missing-line")(lambda w: (w.edit_annotations(
    lambda lines: [line for line in lines if "Shoplifting001" not in line]) or w.train(), ["Shoplifting001"]))
case("train-annotation-misspelt")(lambda w: (w.edit_annotations(
    lambda lines: [line.replace("Shoplifting001", "Shoplifting01") for line in lines]) or w.train(),
    ["Shoplifting001"]))
case("train-no-abnormal-annotations")(lambda w: (w.edit_annotations(
    lambda lines: [line for line in lines if " Normal " in line]) or w.train(), [str(w.annotations)]))
case("train-annotation-garbage")(lambda w: (do(w.annotations.write_text(PASSWD_LIKE), w.train()),
                                            [str(w.annotations)]))
case("train-gt-file-short")(lambda w: (np.save(w.root / "gt.npy", np.zeros(10, np.float32))
                                       or w.train(f"data.gt_file={w.root / 'gt.npy'}"), ["gt.npy"]))


# ---- checkpoints (test reads them; score, calibrate and export through the same loader)
def _sidecar_case(w: Workspace, kind: str) -> tuple[list[str], list[str]]:
    sidecar = w.ckpt.with_suffix(".json")
    if kind == "binary":
        sidecar.write_bytes(b"\x80\x81\xfe\x00" * 8)
    elif kind == "list":
        sidecar.write_text("[1, 2]")
    elif kind == "no-config":
        w.edit_sidecar(lambda meta: meta.pop("config"))
    elif kind == "config-list":
        w.edit_sidecar(lambda meta: meta.update(config=[1]))
    elif kind == "missing":
        sidecar.unlink()
    elif kind == "other-step":  # the torn pair of the probe: weights of one save, sidecar of another
        w.edit_sidecar(lambda meta: meta.update(step=meta["step"] - 5))
    elif kind == "bad-config-value":
        w.edit_sidecar(lambda meta: meta["config"]["model"].update(dropout="high"))
    return w.test(), [str(sidecar)]


cases("test-sidecar", ["binary", "list", "no-config", "config-list", "missing", "other-step", "bad-config-value"],
      _sidecar_case)
case("test-weights-corrupt")(lambda w: (bad_crc_safetensors(w.ckpt) or w.test(), [str(w.ckpt)]))
case("test-weights-truncated")(lambda w: (do(truncated_npy(w.ckpt), w.test()), [str(w.ckpt)]))
case("test-model-file-missing")(lambda w: (w.test(model=w.root / "nope.safetensors"), ["nope.safetensors"]))
case("test-official-pkl-garbage")(lambda w: (w.test(model=w.write("a_model_s_1.pkl", b"\x80\x02garbage")),
                                             ["a_model_s_1.pkl"]))
case("test-official-pkl-wrong-shapes")(lambda w: (w.test(model=_official_wrong_shapes(w)), ["b_model_s_1.pkl"]))
case("test-out-is-a-file")(lambda w: (w.test("--out", str(w.write("out.txt", "x"))), ["out.txt"]))
case("test-crafted-sidecar-data-paths")(lambda w: (w.edit_sidecar(lambda meta: meta["config"]["data"].update(
    list_dir=str(w.root), test_list="passwd")) or w.write("passwd", PASSWD_LIKE) and
    ["test", "--model_file", str(w.ckpt), "--no_plot", f"output_dir={w.root / 'runs'}"], ["passwd"]))
case("test-annotation-past-end")(lambda w: (w.edit_annotations(
    lambda lines: [line.replace(" 230 270 ", " 230 5000 ") for line in lines]) or w.test(), ["RoadAccidents010"]))

case("train-feature-object-array")(lambda w: (np.save(w.train_video(), np.array([1, "a"], dtype=object),
                                                      allow_pickle=True) or w.train(),
                                              [w.train_video().name, "wrong dtype", "array of Python objects"]))
case("test-out-holds-foreign-files")(lambda w: (do(w.write("mine/results.json", "{}"), w.write("mine/notes.txt", "x"),
                                                   w.test("--out", str(w.root / "mine"))),
                                                [str(w.root / "mine"), "results.json", "overwrite"]))


# ---- issue 26: checkpoints that do not belong together, or are not ours (R: the base run's config and last.*)
def _torn_run(w: Workspace, legacy: bool = False) -> Path:
    """``w.root / "R"``: the base run's config.yaml and checkpoints/last.* whose sidecar's step is 5 lower (``legacy``:
    weights re-saved with only a format in their metadata, a sidecar without checkpoint id, sha256 or size, step
    25), and no other checkpoint."""
    run = w.folder("R")
    shutil.copy(w.base_run / "config.yaml", run / "config.yaml")
    (run / "checkpoints").mkdir()
    weights, sidecar = run / "checkpoints" / "last.safetensors", run / "checkpoints" / "last.json"
    shutil.copy(w.base_run / "checkpoints" / "last.safetensors", weights)
    meta = json.loads((w.base_run / "checkpoints" / "last.json").read_text())
    meta["step"] -= 5
    if legacy:
        from safetensors.torch import load_file, save_file

        save_file(load_file(weights), weights, metadata={"format": "adplg-checkpoint-1"})
        for key in ("checkpoint_id", "weights_sha256", "weights_bytes"):
            meta.pop(key, None)
    sidecar.write_text(json.dumps(meta))
    return run


def _zip_pkl(w: Workspace) -> Path:
    import torch

    path = w.root / "x_model_s_1.pkl"
    torch.save({"w": torch.zeros(2)}, path)
    return path


def _foreign_safetensors(w: Workspace) -> Path:
    import torch
    from safetensors.torch import save_file

    path = w.root / "model.safetensors"
    save_file({"w": torch.zeros(2)}, path, metadata={"format": "pt"})
    return path


case("train-resume-torn-pair")(lambda w: (["train", "--resume", str(_torn_run(w))], [
    str(w.root / "R"), "do not belong together", "a torn checkpoint",
    f"adplg train --config {w.root / 'R' / 'config.yaml'} --run_dir {w.root / 'R'}-restart"]))
case("train-run-dir-torn-pair")(lambda w: (["train", "--config", str(_torn_run(w) / "config.yaml"), "--run_dir",
                                            str(w.root / "R")], [
    f"run directory {w.root / 'R'} already holds a run", f"no full checkpoint in {w.root / 'R' / 'checkpoints'}",
    "verifies", f"{w.root / 'R'}-restart"]))
case("train-resume-legacy-torn-pair")(lambda w: (["train", "--resume", str(_torn_run(w, legacy=True))], [
    "do not belong together", "a checkpoint from before checkpoint ids", "30 steps but the sidecar's step is 25",
    f"--run_dir {w.root / 'R'}-restart"]))
case("train-resume-zip-pkl")(lambda w: (["train", "--resume", str(_zip_pkl(w))], [
    "x_model_s_1.pkl", "is a PyTorch checkpoint (a zip archive, written by torch.save)",
    f"adplg test --preset <its preset> --model_file {w.root / 'x_model_s_1.pkl'}"]))
case("train-resume-foreign-safetensors")(lambda w: (["train", "--resume", str(_foreign_safetensors(w))], [
    "model.safetensors", "is not an adplg checkpoint", "no checkpoint_id/format in its metadata"]))
case("test-foreign-safetensors")(lambda w: (w.test(model=_foreign_safetensors(w)), [
    "model.safetensors", "is not an adplg checkpoint", "no checkpoint_id/format in its metadata"]))


def _official_wrong_shapes(w: Workspace) -> Path:
    """An authors'-format snippet-branch state dict whose tensors all have the wrong shape."""
    import torch

    from adplg.models.convert import _NET_S_MAP

    path = w.root / "b_model_s_1.pkl"
    torch.save({key: torch.zeros(*(n + 1 for n in shape)) for key, (_, shape) in _NET_S_MAP.items()}, path)
    return path


test_bad_input = table.pytest_test()
