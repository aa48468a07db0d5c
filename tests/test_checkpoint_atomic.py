"""Issue 14.1, torn checkpoints: the weights file and its sidecar are one verifiable unit; a pair from two different
saves (a crash between the two writes) is refused with the newest checkpoint that verifies named, and a run whose
``last`` is torn resumes from ``previous`` (issue 26; tests/test_checkpoint_faults.py kills saves for real); orphan
temporary files are removed; a run that stopped before its first checkpoint can be started again in its folder."""

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import adplg.checkpoints.format
from adplg.checkpoints.format import (
    BrokenCheckpointError,
    Checkpoint,
    remove_orphan_temporaries,
    save_checkpoint,
    weights_metadata,
)
from adplg.cli.main import main
from adplg.config import build_config
from adplg.data.datasets import build_test_set, build_train_set
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.errors import AdplgError
from adplg.io import file_sha256
from adplg.training.engine import Trainer, create_run_dir

NEW_KEYS = ("checkpoint_id", "weights_sha256", "weights_bytes")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthetic_ucf(tmp_path_factory.mktemp("syn"), num_train_normal=8, num_train_abnormal=8,
                                  num_test_normal=4, num_test_abnormal=4, max_snippets=60, seed=2)


def cfg_for(data, tmp_path, **train):
    overrides = [f"data.list_dir={data.root}", f"output_dir={tmp_path}", "train.progress=false",
                 "train.batch_size=4", "train.warm_up=2", "train.eval_every=6", "train.log_every=3"]
    overrides += [f"train.{k}={v}" for k, v in train.items()]
    return build_config("demo-cpu-small", overrides=overrides)


def tiny_save(path, step, **kwargs):
    torch.manual_seed(step)
    return save_checkpoint(path, net_v=torch.nn.Linear(3, 2), net_s=torch.nn.Linear(3, 1), step=step,
                           config={"name": "tiny"}, **kwargs)


def crash_on(monkeypatch, name, step):
    """The second write of ``save_checkpoint`` (the sidecar) raises for ``<name>.json`` at ``step``, after the
    weights file was replaced: new weights beside the previous sidecar, as a kill between the writes leaves them."""
    real = adplg.checkpoints.format.atomic_write_text

    def write(path, text):
        if path.name == f"{name}.json" and json.loads(text)["step"] == step:
            raise RuntimeError("simulated crash between the weights and the sidecar")
        real(path, text)

    monkeypatch.setattr(adplg.checkpoints.format, "atomic_write_text", write)


def test_pair_carries_one_id_and_the_weights_hash(tmp_path):
    weights = tiny_save(tmp_path / "a", 7)
    meta = json.loads(weights.with_suffix(".json").read_text())
    header = weights_metadata(weights)
    assert header["checkpoint_id"] == meta["checkpoint_id"] and len(meta["checkpoint_id"]) == 32
    assert header["step"] == "7" and meta["step"] == 7
    assert meta["weights_sha256"] == file_sha256(weights) and meta["weights_bytes"] == weights.stat().st_size
    ckpt = Checkpoint(tmp_path / "a")
    assert ckpt.verify() is True and set(ckpt.part("net_s")) == {"weight", "bias"}
    assert tiny_save(tmp_path / "b", 7).with_suffix(".json").read_text() != weights.with_suffix(".json").read_text()


def test_torn_pair_is_refused_naming_both_files_and_the_previous_good_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    tiny_save(folder / "step_5", 5)
    tiny_save(folder / "last", 5, optimizers={"v": torch.optim.Adam(torch.nn.Linear(3, 2).parameters())})
    crash_on(monkeypatch, "last", 9)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tiny_save(folder / "last", 9, optimizers={"v": torch.optim.Adam(torch.nn.Linear(3, 2).parameters())})
    assert weights_metadata(folder / "last.safetensors")["step"] == "9"  # new weights, old sidecar
    with pytest.raises(AdplgError) as err:
        Checkpoint(folder / "last.safetensors")
    msg = str(err.value)
    assert "do not belong together" in msg and "torn checkpoint" in msg and "Refusing to load it" in msg
    assert str(folder / "last.safetensors") in msg and str(folder / "last.json") in msg
    assert "weights file is step 9" in msg and "sidecar describes step 5" in msg
    assert "No other full checkpoint" in msg and f"{folder / 'step_5.safetensors'} (step 5, weights only)" in msg


def test_legacy_checkpoints_load_and_half_legacy_pairs_are_refused(tmp_path):
    weights = tiny_save(tmp_path / "old", 3)
    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    legacy_meta = {k: v for k, v in meta.items() if k not in NEW_KEYS}
    new_blob = weights.read_bytes()
    save_file(load_file(str(weights)), str(weights), metadata={"format": "adplg-checkpoint-1"})
    sidecar.write_text(json.dumps(legacy_meta))
    ckpt = Checkpoint(weights)  # written before this change: no id in either file, no check
    assert ckpt.meta["step"] == 3 and ckpt.verify() is False
    sidecar.write_text(json.dumps(meta))  # old weights, new sidecar
    with pytest.raises(AdplgError, match=r"step \? \(id none\) but the sidecar describes step 3"):
        Checkpoint(weights)
    weights.write_bytes(new_blob)
    sidecar.write_text(json.dumps(legacy_meta))  # new weights beside a sidecar from before the change
    with pytest.raises(AdplgError, match=r"describes step 3 \(id none\)"):
        Checkpoint(weights)


def test_damaged_weights_fail_the_sha256_check(tmp_path):
    weights = tiny_save(tmp_path / "a", 4)
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF  # same size, same header: only the hash notices
    weights.write_bytes(bytes(blob))
    with pytest.raises(AdplgError, match="does not match the sha256 recorded in its sidecar"):
        Checkpoint(weights).verify()


def test_weights_without_their_sidecar_are_refused(tmp_path):
    tiny_save(tmp_path / "step_2", 2)
    weights = tiny_save(tmp_path / "step_4", 4)
    weights.with_suffix(".json").unlink()
    with pytest.raises(AdplgError, match="checkpoint sidecar not found") as err:
        Checkpoint(weights)
    assert "stopped between writing the two files" in str(err.value)
    assert str(tmp_path / "step_2.safetensors") in str(err.value)


def test_torn_last_in_a_real_run_resumes_from_previous_and_a_torn_named_checkpoint_is_refused(data, tmp_path,
                                                                                              monkeypatch, capsys,
                                                                                              caplog):
    cfg6, cfg12 = cfg_for(data, tmp_path, num_iters=6), cfg_for(data, tmp_path, num_iters=12)
    train, test = build_train_set(cfg6, progress=False), build_test_set(cfg6, progress=False)
    straight = Trainer(cfg12, train, test, create_run_dir(cfg12, tmp_path / "straight"))
    straight.fit()

    run = tmp_path / "run"
    Trainer(cfg6, train, test, create_run_dir(cfg6, run)).fit()
    ckpts = run / "checkpoints"
    for suffix in (".safetensors", ".json"):  # a second full checkpoint, as a user's copy of last
        shutil.copy(ckpts / f"last{suffix}", ckpts / f"keep{suffix}")
    resumed = Trainer(cfg12, train, test, run)
    resumed.resume(Checkpoint(run))
    crash_on(monkeypatch, "last", 12)
    with pytest.raises(RuntimeError, match="simulated crash"):
        resumed.fit()
    monkeypatch.undo()

    with pytest.raises(BrokenCheckpointError) as err:
        Checkpoint(run)
    msg = str(err.value)
    assert "weights file is step 12" in msg and "sidecar describes step 6" in msg
    # the save kept the pair it replaced as previous until the new one verifies: previous is last at step 6
    assert f"The newest full checkpoint that verifies is {ckpts / 'previous.safetensors'} (step 6)" in msg
    assert f"{ckpts / 'step_12.safetensors'} (step 12, weights only)" in msg
    capsys.readouterr()
    assert main(["test", "--model_file", str(ckpts / "last.safetensors"), "train.progress=false"]) == 2
    assert "do not belong together" in capsys.readouterr().err

    shutil.copy(ckpts / "last.safetensors", ckpts / "keep.safetensors")  # a torn pair under a name of the user's
    assert main(["train", "--resume", str(ckpts / "keep.safetensors")]) == 2  # named explicitly: refused, not swapped
    err_text = capsys.readouterr().err
    assert "torn checkpoint" in err_text and f"adplg train --resume {ckpts / 'previous.safetensors'}" in err_text

    (ckpts / ".last.safetensors.x1y2z3_a.tmp").write_bytes(b"\0" * 1000)  # a kill during a write
    caplog.set_level(logging.WARNING, logger="adplg")
    assert main(["train", "--resume", str(run), "train.num_iters=12"]) == 0  # continues from previous, warning
    warning = caplog.text
    assert f"{ckpts / 'last.safetensors'} cannot be resumed" in warning and "sidecar describes step 6" in warning
    assert f"Resuming from {ckpts / 'previous.safetensors'} (step 6)" in warning
    assert not (ckpts / ".last.safetensors.x1y2z3_a.tmp").exists()
    assert not (ckpts / "previous.safetensors").exists() and not (ckpts / "previous.json").exists()
    final = Checkpoint(run)
    assert final.meta["step"] == 12 and final.verify()
    expected = straight.scoring_net.state_dict()
    for name, value in final.part("net_s").items():
        assert torch.equal(value, expected[name]), name


def test_orphan_temporaries_are_removed_and_nothing_else(data, tmp_path):
    cfg = cfg_for(data, tmp_path, num_iters=6)
    run = create_run_dir(cfg, tmp_path / "run")
    ckpts = run / "checkpoints"
    ckpts.mkdir()
    orphans = [".last.safetensors.abc12_xy.tmp", ".step_6.json.q9w8e7r6.tmp"]
    keep = ["notes.tmp", "last.safetensors.tmp", ".last.onnx.json.abcdefgh.tmp", ".hidden", ".x.tmp",
            ".last.safetensors.tmp", "model.onnx"]
    for name in orphans + keep:
        (ckpts / name).write_text("x")
    (ckpts / ".dir.json.abcdefgh.tmp").mkdir()
    assert sorted(p.name for p in remove_orphan_temporaries(ckpts)) == sorted(orphans)
    assert sorted(p.name for p in ckpts.iterdir()) == sorted(keep + [".dir.json.abcdefgh.tmp"])

    trainer = Trainer(cfg, build_train_set(cfg, progress=False), None, run)
    (ckpts / orphans[0]).write_text("x")
    trainer.save("last")
    assert not (ckpts / orphans[0]).exists() and (ckpts / "last.json").is_file()
    (ckpts / orphans[1]).write_text("x")
    Trainer(cfg, build_train_set(cfg, progress=False), None, run).resume(Checkpoint(run))
    assert not (ckpts / orphans[1]).exists()
    assert all((ckpts / name).exists() for name in keep)
    assert remove_orphan_temporaries(tmp_path / "missing") == []


def test_run_that_stopped_before_its_first_checkpoint_starts_again_in_its_folder(data, tmp_path, capsys):
    cfg = cfg_for(data, tmp_path, num_iters=6)
    run = create_run_dir(cfg, tmp_path / "run")
    (run / "metrics.jsonl").write_text('{"step": 3, "kind": "train", "stale": true}\n')
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".step_6.safetensors.abcdefgh.tmp").write_bytes(b"\0" * 100)

    with pytest.raises(AdplgError, match="holds no checkpoint: the run stopped before its first one") as err:
        Checkpoint(run)
    command = f"adplg train --config {run / 'config.yaml'} --run_dir {run}"
    assert command in str(err.value)
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    assert command in capsys.readouterr().err

    assert main(["train", "--config", str(run / "config.yaml"), "--run_dir", str(run)]) == 0
    ckpt = Checkpoint(run)
    assert ckpt.meta["step"] == 6 and ckpt.meta["config"] == cfg.to_dict()
    assert not (run / "checkpoints" / ".step_6.safetensors.abcdefgh.tmp").exists()
    assert [p.read_text() for p in run.glob("metrics.before-*.jsonl")] == [
        '{"step": 3, "kind": "train", "stale": true}\n']
    assert "stale" not in (run / "metrics.jsonl").read_text()
    with pytest.raises(AdplgError, match="already holds a run"):
        create_run_dir(cfg, run)
