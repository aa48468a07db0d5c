"""Training logs: ``train.tensorboard`` writes the losses and evaluation metrics to ``<run_dir>/tensorboard``; the log
line of an evaluation shows rounded metrics and leaves out the ones that were not computed."""

import logging
import re
import sys

import pytest

from adplg.config import build_config
from adplg.data.datasets import build_test_set, build_train_set
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.errors import AdplgError
from adplg.training.engine import Trainer, create_run_dir
from adplg.training.tensorboard import TENSORBOARD_FOLDER


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthetic_ucf(tmp_path_factory.mktemp("syn"), num_train_normal=6, num_train_abnormal=6,
                                  num_test_normal=2, num_test_abnormal=2, max_snippets=60, seed=2)


def config(data, tmp_path, *overrides):
    return build_config("demo-cpu-small", overrides=[
        f"data.list_dir={data.root}", f"output_dir={tmp_path}", "train.progress=false", "train.batch_size=4",
        "train.num_iters=8", "train.warm_up=2", "train.eval_every=4", "train.log_every=2", *overrides])


def trainer(cfg, tmp_path) -> Trainer:
    return Trainer(cfg, build_train_set(cfg, progress=False), build_test_set(cfg, progress=False),
                   create_run_dir(cfg, tmp_path / "run"))


def test_tensorboard_event_file_holds_the_losses_and_metrics(data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = trainer(config(data, tmp_path, "train.tensorboard=true"), tmp_path)
    summary = run.fit()
    events = EventAccumulator(str(tmp_path / "run" / TENSORBOARD_FOLDER))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_v", "train/loss_s", "eval/auc", "eval/ap", "eval/pr_auc", "eval/far"} <= tags
    assert [e.step for e in events.Scalars("train/loss_v")] == [2, 4, 6, 8]
    assert [e.step for e in events.Scalars("eval/auc")] == [4, 8]
    assert events.Scalars("eval/auc")[-1].value == pytest.approx(summary["last"]["test"]["auc"], abs=1e-6)
    assert "eval/val_video_auc" not in tags  # not computed (train.val_fraction=0)


def test_tensorboard_is_off_by_default(data, tmp_path):
    cfg = config(data, tmp_path, "train.num_iters=4")
    assert cfg.train.tensorboard is False
    trainer(cfg, tmp_path).fit()
    assert not (tmp_path / "run" / TENSORBOARD_FOLDER).exists()


def test_tensorboard_missing_is_a_clear_error(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    with pytest.raises(AdplgError) as exc:
        trainer(config(data, tmp_path, "train.tensorboard=true"), tmp_path)
    message = str(exc.value)
    assert "train.tensorboard" in message and "pip install 'adplg[tensorboard]'" in message
    assert "train.tensorboard=false" in message


def test_evaluation_log_line_is_rounded_and_omits_none(data, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="adplg"):
        trainer(config(data, tmp_path), tmp_path).fit()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 2, lines
    for line in lines:
        assert re.fullmatch(r"step \d+: auc=\d\.\d{4}", line), line  # no val_video_auc=None
