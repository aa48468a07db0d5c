"""Issue 26: a killed save never costs a run. A training process is killed for real (``os._exit`` inside the window
between the two writes of a save of ``last``: no cleanup runs, as under SIGKILL); ``train --resume`` then continues
from the ``previous`` pair that the save kept and ends bit for bit equal to an uninterrupted run: every tensor of the
final checkpoint (weights, optimizer moments, pseudo-label history, samplers, RNG), the optimizer and scheduler
records, and ``metrics.jsonl`` (the train-loss means included). A kill at every other file operation of a save also
leaves a full checkpoint to resume. Legacy (pre-id) pairs are checked by their contents; a torch.save file and a
foreign safetensors file given to ``--resume`` are named as what they are."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import adplg
import adplg.checkpoints.format as checkpoint_format
from adplg.checkpoints.format import (
    FORMAT,
    BrokenCheckpointError,
    Checkpoint,
    save_checkpoint,
    verified_checkpoints,
    weights_metadata,
)
from adplg.checkpoints.resume import checkpoint_to_resume
from adplg.cli.main import main
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.training.engine import Trainer
from adplg.training.run import train

KILL_STEP = 9  # saves of last at 3, 6, 9 (save_every=3), train-loss log lines at 4, 8, 12 (log_every=4)
NEW_KEYS = ("checkpoint_id", "weights_sha256", "weights_bytes")
KILLED_TRAINING = """
import json, os, sys
import adplg.checkpoints.format as checkpoint_format
from adplg.training.run import train

overrides, run_dir, kill_step = json.loads(sys.argv[1])
write_text = checkpoint_format.atomic_write_text

def write_or_die(path, text):
    if path.name == "last.json" and json.loads(text)["step"] == kill_step:
        os._exit(137)  # the new weights are in place, their sidecar is not: no cleanup runs, as under SIGKILL
    write_text(path, text)

checkpoint_format.atomic_write_text = write_or_die
train("demo-cpu-small", overrides=overrides, run_dir=run_dir, evaluate=False)
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthetic_ucf(tmp_path_factory.mktemp("syn"), num_train_normal=8, num_train_abnormal=8,
                                  num_test_normal=3, num_test_abnormal=3, max_snippets=60, seed=4)


def overrides(data):
    """One config for every run here (their run directories are given: ``output_dir`` is never used)."""
    return [f"data.list_dir={data.root}", f"output_dir={data.root / 'runs'}", "train.progress=false",
            "train.batch_size=4", "train.num_iters=12", "train.warm_up=2", "train.eval_every=100",
            "train.save_every=3", "train.log_every=4"]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """The uninterrupted run of the 12 steps."""
    root = tmp_path_factory.mktemp("straight")
    return train("demo-cpu-small", overrides=overrides(data), run_dir=root / "run", evaluate=False).run_dir


@pytest.fixture(scope="module")
def killed(data, tmp_path_factory):
    """The same run in a subprocess killed between the two writes of its save of last at step 9 (kept pristine:
    tests copy it)."""
    root = tmp_path_factory.mktemp("killed")
    env_path = str(Path(adplg.__file__).resolve().parents[1])
    args = json.dumps([overrides(data), str(root / "run"), KILL_STEP])
    done = subprocess.run([sys.executable, "-c", KILLED_TRAINING, args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": env_path})
    assert done.returncode == 137, done.stderr[-3000:]
    return root / "run"


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    return target


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_final_state(run: Path, reference: Path) -> None:
    """The two runs' final ``last`` checkpoints hold the same tensors bit for bit and the same training records, and
    their ``metrics.jsonl`` are equal (every train-loss mean to the last bit)."""
    a, b = Checkpoint(run), Checkpoint(reference)
    assert a.meta["step"] == b.meta["step"] == 12
    assert sorted(a.tensors) == sorted(b.tensors)
    for name, value in a.tensors.items():
        assert torch.equal(value, b.tensors[name]), name
    for key in ("optim_v", "optim_s", "scheduler", "evaluations", "history_keys", "config", "data_manifest"):
        assert a.meta[key] == b.meta[key], key
    assert records(run) == records(reference)
    assert [r["step"] for r in records(run) if r["kind"] == "train"] == [4, 8, 12]


def test_a_save_killed_between_its_two_writes_resumes_from_previous_bit_for_bit(killed, straight, tmp_path, caplog,
                                                                                capsys):
    run = copy_run(killed, tmp_path / "run")
    ckpts = run / "checkpoints"
    assert weights_metadata(ckpts / "last.safetensors")["step"] == str(KILL_STEP)  # new weights, old sidecar
    assert json.loads((ckpts / "last.json").read_text())["step"] == 6
    assert [(c.path.name, c.step, c.full) for c in verified_checkpoints(ckpts)] == [("previous.safetensors", 6, True)]
    assert [r["step"] for r in records(run)] == [4, 8]  # logged before the kill, after the checkpoint's step 6

    caplog.set_level(logging.WARNING, logger="adplg")
    assert main(["train", "--resume", str(run), "--no_eval"]) == 0
    assert f"{ckpts / 'last.safetensors'} cannot be resumed" in caplog.text
    assert f"Resuming from {ckpts / 'previous.safetensors'} (step 6) instead" in caplog.text
    assert "the steps after 6 are trained again" in caplog.text
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.json", "last.safetensors", "step_12.json",
                                                       "step_12.safetensors"]
    assert_same_final_state(run, straight)
    rolled_back = [json.loads(line) for f in run.glob("metrics.rolled-back-*.jsonl") for line in f.open()]
    assert [r["step"] for r in rolled_back] == [8]  # the record of the killed attempt, moved aside


def test_metrics_after_an_ordinary_resume_equal_an_uninterrupted_run(data, straight, tmp_path, monkeypatch):
    original = Trainer.train_step

    def interrupted(self, step):
        if step == KILL_STEP:  # after the log line of step 8 and the save of step 6
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("demo-cpu-small", overrides=overrides(data), run_dir=tmp_path / "run", evaluate=False)
    monkeypatch.undo()
    resumed = Checkpoint(tmp_path / "run")
    assert resumed.meta["step"] == 6 and resumed.part("extra.running")["loss_v"].shape == (2,)  # steps 5 and 6
    train(resume=tmp_path / "run", evaluate=False)
    assert_same_final_state(tmp_path / "run", straight)


class Killed(Exception):
    """Stands for the process dying at one file operation of a save."""


@pytest.mark.parametrize("kill_at", range(1, 7))
def test_a_kill_at_any_file_operation_of_a_save_leaves_a_full_checkpoint_to_resume(tmp_path, monkeypatch, kill_at):
    """A save of last over a good last: link last's weights and sidecar as previous (1, 2), write the weights (3)
    and the sidecar (4), delete previous's weights and sidecar (5, 6). Killed before operation ``kill_at``."""
    def tiny_save(step):
        torch.manual_seed(step)
        net = torch.nn.Linear(3, 2)
        return save_checkpoint(tmp_path / "last", net_v=net, net_s=torch.nn.Linear(3, 1), step=step,
                               config={"name": "tiny"}, optimizers={"v": torch.optim.Adam(net.parameters())},
                               keep_previous=True)

    tiny_save(5)
    operations = []
    for name in ("publish_link", "atomic_write_bytes", "atomic_write_text", "remove_file"):
        def operation(*args, real=getattr(checkpoint_format, name)):
            operations.append(args)
            if len(operations) == kill_at:
                raise Killed
            return real(*args)
        monkeypatch.setattr(checkpoint_format, name, operation)
    with pytest.raises(Killed):
        tiny_save(9)
    monkeypatch.undo()
    resumed = checkpoint_to_resume(tmp_path / "last.safetensors")
    assert resumed.meta["step"] == (9 if kill_at > 4 else 5) and resumed.verify()
    assert resumed.path.name == ("previous.safetensors" if kill_at == 4 else "last.safetensors")
    tiny_save(12)  # the next save completes and leaves last alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors"]
    assert Checkpoint(tmp_path / "last").meta["step"] == 12


def make_legacy(weights: Path, sidecar: Path, target: Path) -> Path:
    """``weights`` + ``sidecar`` as written before checkpoint ids: no id or step in the weights' metadata, no id,
    hash or size in the sidecar."""
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(load_file(str(weights)), str(target.with_suffix(".safetensors")), metadata={"format": FORMAT})
    meta = {k: v for k, v in json.loads(sidecar.read_text()).items() if k not in NEW_KEYS}
    target.with_suffix(".json").write_text(json.dumps(meta))
    return target.with_suffix(".safetensors")


def test_legacy_pairs_are_checked_by_their_contents_and_a_run_without_one_that_verifies_restarts(killed, tmp_path,
                                                                                                caplog, capsys):
    ckpts = killed / "checkpoints"
    good = make_legacy(ckpts / "previous.safetensors", ckpts / "previous.json", tmp_path / "good" / "last")
    caplog.set_level(logging.WARNING, logger="adplg")
    assert Checkpoint(good).meta["step"] == 6
    assert "predates checkpoint ids" in caplog.text and "cannot be fully verified" in caplog.text

    run = tmp_path / "legacy-run"  # weights of step 9 beside the sidecar of step 6, both from before the ids
    torn = make_legacy(ckpts / "last.safetensors", ckpts / "last.json", run / "checkpoints" / "last")
    shutil.copy(killed / "config.yaml", run / "config.yaml")
    with pytest.raises(BrokenCheckpointError, match="branch-1 optimizer has taken 9 steps but the sidecar's step is 6"):
        Checkpoint(torn)
    restart = f"adplg train --config {run / 'config.yaml'} --run_dir {tmp_path / 'legacy-run-restart'}"
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "do not belong together" in err and "No other full checkpoint" in err and restart in err
    assert main(["train", "--config", str(run / "config.yaml"), "--run_dir", str(run)]) == 2  # no circle back
    err = capsys.readouterr().err
    assert "cannot be resumed" in err and restart in err and "--resume" not in err
    assert main(restart.split()[1:]) == 0  # the command the messages give works
    assert Checkpoint(tmp_path / "legacy-run-restart").meta["step"] == 12


def test_a_torch_save_file_or_a_foreign_safetensors_file_given_to_resume_is_named_for_what_it_is(tmp_path, capsys):
    zipped = tmp_path / "ucf_model_s_1.pkl"
    torch.save({"fc.weight": torch.zeros(2, 2)}, zipped)
    pickled = tmp_path / "old.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, pickled, _use_new_zipfile_serialization=False)
    for path, kind in ((zipped, "a zip archive"), (pickled, "a pickle")):
        assert main(["train", "--resume", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path} is a PyTorch checkpoint ({kind}, written by torch.save)" in err
        assert f"adplg test --preset <its preset> --model_file {path}" in err
        assert "checkpoint sidecar not found" not in err and "torn" not in err

    foreign = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    for command in (["train", "--resume", str(foreign)], ["test", "--model_file", str(foreign)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"{foreign} is not an adplg checkpoint: no checkpoint_id/format in its metadata" in err
        assert "torn" not in err and "stopped between" not in err
