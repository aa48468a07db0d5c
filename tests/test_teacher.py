"""Distillation from a trained snippet branch (train.teacher, loss.distill): the targets, the loss, the checks."""

import re

import pytest
import torch
from torch.nn import functional as F

from adplg.checkpoints.load import load_snippet_branch
from adplg.config import build_config
from adplg.data.datasets import build_train_set
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.errors import AdplgError
from adplg.training.engine import Trainer, create_run_dir
from adplg.training.teacher import teacher_scores


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthetic_ucf(tmp_path_factory.mktemp("syn"), num_train_normal=8, num_train_abnormal=8,
                                  num_test_normal=2, num_test_abnormal=2, max_snippets=80, seed=3)


def cfg_for(data, out, *overrides):
    return build_config("demo-cpu-small", overrides=[
        f"data.list_dir={data.root}", f"output_dir={out}", "train.progress=false", "train.batch_size=4",
        "train.warm_up=2", "train.num_iters=6", "train.eval_every=100", *overrides])


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory):
    """A bidirectional run of 6 steps: its run directory and training set."""
    out = tmp_path_factory.mktemp("teacher")
    cfg = cfg_for(data, out)
    train = build_train_set(cfg, progress=False)
    run = create_run_dir(cfg, out / "run")
    Trainer(cfg, train, None, run).fit()
    return run, train


def test_teacher_scores_are_the_saved_branch_on_the_training_crops(teacher):
    run, train = teacher
    scores = teacher_scores(run, train.features)
    _, net = load_snippet_branch(run, announce_data=False)
    assert scores.shape == train.features.shape[:2]
    assert torch.allclose(scores, net(train.features), atol=1e-6)


def test_distill_one_trains_the_student_on_the_teachers_scores_alone(data, teacher, tmp_path):
    """With loss.distill 1 the pseudo-labels do not enter branch 2's loss: the logged loss is the BCE of the
    student's scores against the teacher's, and training moves the student towards the teacher."""
    run, train = teacher
    cfg = cfg_for(data, tmp_path, f"train.teacher={run}", "loss.distill=1", "model.causal=true",
                  "train.warm_up=0", "train.num_iters=12", "train.lr_s=0.003")
    student = Trainer(cfg, train, None, create_run_dir(cfg, tmp_path / "student"))
    targets = student.teacher_targets
    assert torch.equal(targets, teacher_scores(run, train.features))  # a causal student of a bidirectional teacher

    @torch.no_grad()
    def distance() -> float:
        return float(F.binary_cross_entropy(student.net_s.eval()(train.features), targets))

    before = distance()
    student.fit()
    assert distance() < before - 0.01


@pytest.mark.parametrize("distill", [1.0, 0.5])
def test_the_pseudo_labels_weigh_one_minus_distill(data, teacher, tmp_path, distill):
    """Pseudo-labels of other thresholds change branch 2's loss at loss.distill 0.5, not at 1."""
    run, train = teacher
    losses = []
    for threshold in (0.1, 0.9):
        cfg = cfg_for(data, tmp_path, f"train.teacher={run}", f"loss.distill={distill}", "train.warm_up=0",
                      "train.batch_size=8", f"plg.mean_threshold={threshold}", "model.dropout=0", "model.cls_dropout=0")
        trainer = Trainer(cfg, train, None, create_run_dir(cfg, tmp_path / f"t{threshold}-{distill}"))
        losses.append([float(trainer.train_step(step)["loss_s"]) for step in range(1, 5)])  # the history fills
    assert (losses[0] == losses[1]) == (distill == 1.0)


def test_distill_needs_a_teacher_and_the_teacher_the_same_features(data, teacher, tmp_path):
    with pytest.raises(AdplgError, match="loss.distill and train.teacher go together"):
        cfg_for(data, tmp_path, "loss.distill=0.5")
    run, train = teacher
    cfg = cfg_for(data, tmp_path, f"train.teacher={run}", "loss.distill=0.5")
    wider = torch.zeros(*train.features.shape[:2], train.features.shape[2] + 1)
    with pytest.raises(AdplgError, match=r"expects \d+-d features, the student trains on \d+-d"):
        teacher_scores(run, wider)
    with pytest.raises(AdplgError, match="not found"):
        Trainer(cfg.model_copy(update={"train": cfg.train.model_copy(update={"teacher": str(tmp_path / "none")})}),
                train, None, create_run_dir(cfg, tmp_path / "s"))


def test_train_refuses_a_missing_teacher_before_making_a_run_directory(data, tmp_path):
    from adplg.training.run import train

    missing = tmp_path / "no-run"
    expected = rf"checkpoint at {re.escape(str(missing))} \(looked for .*no-run.safetensors\)"
    with pytest.raises(AdplgError, match=r"^train.teacher: expected a trained run directory or checkpoint, found no "
                                         + expected):
        train(cfg_for(data, tmp_path / "out", f"train.teacher={missing}", "loss.distill=0.5"), evaluate=False)
    assert not (tmp_path / "out").exists()


def test_adplg_train_teacher_flag(data, teacher, tmp_path, capsys):
    """``adplg train --teacher RUN`` sets train.teacher and loss.distill 0.5 (an override wins); a missing teacher is
    refused naming the flag, before a run directory is made."""
    from adplg.checkpoints.format import Checkpoint
    from adplg.cli.main import main

    run, _ = teacher
    base = ["train", "--preset", "demo-cpu-small", "--list_dir", str(data.root), "--output_dir", str(tmp_path),
            "--no_eval", "train.progress=false", "train.batch_size=4", "train.warm_up=2", "train.num_iters=4",
            "model.causal=true"]
    assert main([*base, "--teacher", str(run)]) == 0
    assert main([*base, "--teacher", str(run), "--run_dir", str(tmp_path / "d1"), "loss.distill=1"]) == 0
    saved = [Checkpoint(path).meta["config"] for path in sorted(tmp_path.glob("*/checkpoints/last.json"))]
    assert [(c["train"]["teacher"], c["loss"]["distill"]) for c in saved] == [(str(run.resolve()), 1.0),
                                                                             (str(run.resolve()), 0.5)]
    assert main([*base, "--teacher", str(tmp_path / "nothing")]) != 0
    assert "--teacher: expected a trained run directory or checkpoint" in capsys.readouterr().err
    assert len(list(tmp_path.glob("*/checkpoints/last.json"))) == 2
