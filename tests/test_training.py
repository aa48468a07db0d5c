"""The full pipeline on synthetic UCF-format data: run directory, resume, checkpoints, test command."""

import json

import pytest
import torch

from adplg.checkpoints.format import Checkpoint
from adplg.cli.main import main
from adplg.config import build_config
from adplg.data.datasets import build_test_set, build_train_set
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.errors import AdplgError
from adplg.training.engine import Trainer, create_run_dir


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthetic_ucf(tmp_path_factory.mktemp("syn"), num_train_normal=12, num_train_abnormal=12,
                                  num_test_normal=4, num_test_abnormal=4, max_snippets=120, seed=1)


def cfg_for(data, tmp_path, **train):
    overrides = [f"data.list_dir={data.root}", f"output_dir={tmp_path}", "train.progress=false",
                 "train.batch_size=4", "train.warm_up=4", "train.eval_every=6", "train.log_every=3"]
    overrides += [f"train.{k}={v}" for k, v in train.items()]
    return build_config("demo-cpu-small", overrides=overrides)


def test_run_directory_contents(data, tmp_path):
    cfg = cfg_for(data, tmp_path, num_iters=12, val_fraction=0.25)
    run = create_run_dir(cfg, tmp_path / "run")
    summary = Trainer(cfg, build_train_set(cfg, progress=False), build_test_set(cfg, progress=False), run).fit()
    for name in ("config.yaml", "versions.json", "metrics.jsonl", "summary.json", "checkpoints/last.safetensors",
                 "checkpoints/last.json", "checkpoints/step_6.safetensors", "checkpoints/step_12.json",
                 "evals/step_12/results.json", "evals/step_12/scores.npz"):
        assert (run / name).is_file(), name
    assert summary["evaluations"] == 2
    assert summary["last"]["step"] == 12 and "val_video_auc" in summary["val_selected"]
    assert "test set" in summary["best_on_test"]["note"]
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["config"]["train"]["seed"] == cfg.train.seed and meta["versions"]["torch"] == torch.__version__
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "eval"}
    with pytest.raises(Exception, match="already holds a run"):
        create_run_dir(cfg, run)


def test_resume_continues_identically(data, tmp_path):
    full_cfg = cfg_for(data, tmp_path, num_iters=16)
    train, test = build_train_set(full_cfg, progress=False), build_test_set(full_cfg, progress=False)
    straight = Trainer(full_cfg, train, test, create_run_dir(full_cfg, tmp_path / "a"))
    straight.fit()

    half_cfg = cfg_for(data, tmp_path, num_iters=10)
    first = Trainer(half_cfg, train, test, create_run_dir(half_cfg, tmp_path / "b"))
    first.fit()
    resumed = Trainer(full_cfg, train, test, tmp_path / "b")
    resumed.resume(Checkpoint(tmp_path / "b"))
    assert resumed.step == 10
    resumed.fit()
    for (name, a), (_, b) in zip(straight.net_s.state_dict().items(), resumed.net_s.state_dict().items()):
        assert torch.equal(a, b), name
    for (name, a), (_, b) in zip(straight.net_v.state_dict().items(), resumed.net_v.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(straight.plg.buffer, resumed.plg.buffer)


@pytest.mark.parametrize("option, updates", [({"ema_decay": 0.9}, 16 - 4), ({"average_from": 9}, 16 - 9)],
                         ids=["ema", "uniform"])
def test_averaging_options_save_the_average_and_resume_identically(data, tmp_path, option, updates):
    full_cfg = cfg_for(data, tmp_path, num_iters=16, **option)
    train, test = build_train_set(full_cfg, progress=False), build_test_set(full_cfg, progress=False)
    straight = Trainer(full_cfg, train, test, create_run_dir(full_cfg, tmp_path / "a"))
    straight.fit()
    saved = Checkpoint(tmp_path / "a").part("net_s")
    averaged = straight.average_s.module.state_dict()
    trained = straight.net_s.state_dict()
    assert all(torch.equal(saved[k], averaged[k]) for k in saved)  # net_s in the checkpoint is what was evaluated
    assert any(not torch.equal(averaged[k], trained[k]) for k in trained)
    # one update per snippet-branch step after the warm-up (ema) or after train.average_from (uniform)
    assert int(straight.average_s.n_averaged) == updates
    if "average_from" in option:  # before the average begins, the trained weights score (step 6 < 9)
        early = Checkpoint(tmp_path / "a" / "checkpoints" / "step_6.safetensors").part("net_s")
        assert any(not torch.equal(early[k], saved[k]) for k in saved)
        assert straight.history[0]["test"]["auc"] != straight.history[-1]["test"]["auc"]

    half_cfg = cfg_for(data, tmp_path, num_iters=10, **option)
    first = Trainer(half_cfg, train, test, create_run_dir(half_cfg, tmp_path / "b"))
    first.fit()
    resumed = Trainer(full_cfg, train, test, tmp_path / "b")
    resumed.resume(Checkpoint(tmp_path / "b"))
    resumed.fit()
    for net_a, net_b in ((straight.net_s, resumed.net_s), (straight.average_s.module, resumed.average_s.module)):
        for (name, a), (_, b) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
            assert torch.equal(a, b), name
    plain = Trainer(cfg_for(data, tmp_path, num_iters=16), train, test, tmp_path / "b")
    with pytest.raises(AdplgError, match="moving average"):
        plain.resume(Checkpoint(tmp_path / "b"))


def test_ema_and_uniform_average_are_exclusive(data, tmp_path):
    with pytest.raises(AdplgError, match="expected one of them"):
        cfg_for(data, tmp_path, num_iters=16, ema_decay=0.9, average_from=5)


def test_snippet_members_learn_side_by_side_and_score_as_their_mean(data, tmp_path):
    from adplg.checkpoints.load import load_scorer
    from adplg.evaluation.evaluate import predict_snippet_scores
    from adplg.models.ensemble import SnippetEnsemble

    cfg = cfg_for(data, tmp_path, num_iters=10)
    cfg.model.snippet_members = 3
    train, test = build_train_set(cfg, progress=False), build_test_set(cfg, progress=False)
    trainer = Trainer(cfg, train, test, create_run_dir(cfg, tmp_path / "run"))
    initial = [{k: v.clone() for k, v in m.state_dict().items()} for m in trainer.net_s.members]
    trainer.fit()
    members = trainer.net_s.members
    assert isinstance(trainer.net_s, SnippetEnsemble) and len(members) == 3
    weight = "classifier.fc2.weight"
    assert not torch.equal(initial[0][weight], initial[1][weight])  # independently initialised
    assert all(not torch.equal(m.state_dict()[weight], i[weight]) for m, i in zip(members, initial))  # all learned
    # the checkpoint rebuilds the K members from its config and scores as their mean, as the run evaluated it
    _, loaded = load_scorer([tmp_path / "run" / "checkpoints" / "step_10.safetensors"])
    scores = predict_snippet_scores(loaded, test)
    each = [predict_snippet_scores(m, test) for m in loaded.members]
    for v, s in enumerate(scores):
        assert s == pytest.approx(sum(e[v] for e in each) / 3, abs=1e-6)
    saved = json.loads((tmp_path / "run" / "evals" / "step_10" / "results.json").read_text())["metrics"]["auc"]
    assert trainer.history[-1]["test"]["auc"] == saved
    from adplg.deploy.export import export_model
    with pytest.raises(AdplgError, match="ensemble of 3"):  # not silently exporting one member
        export_model(loaded, tmp_path / "model.pt", "torchscript")


def test_cli_train_then_test(data, tmp_path, capsys):
    args = [f"data.list_dir={data.root}", "train.progress=false", "train.batch_size=4", "train.warm_up=2",
            "train.eval_every=4", "train.num_iters=4", "model.input_standardize=true", "eval.smooth_window=3"]
    assert main(["train", "--preset", "demo-cpu-small", "--run_dir", str(tmp_path / "run"), *args]) == 0
    out = capsys.readouterr().out
    assert "last" in out and "auc=" in out
    ckpt = tmp_path / "run" / "checkpoints" / "step_4.safetensors"
    mean = Checkpoint(ckpt).part("net_s")["input_adapter.mean"]
    assert mean.abs().sum() > 0  # training-set statistics travel with the weights
    assert main(["test", "--model_file", str(ckpt), "--out", str(tmp_path / "t"), "train.progress=false"]) == 0
    result = json.loads((tmp_path / "t" / "results.json").read_text())
    saved = json.loads((tmp_path / "run" / "evals" / "step_4" / "results.json").read_text())
    assert result["metrics"]["auc"] == pytest.approx(saved["metrics"]["auc"], abs=1e-9)


def test_adamw_option_and_weight_decay_zeroes_unused_positions(data, tmp_path):
    """Quirk 1: Adam-L2 decays the never-used positional rows; AdamW keeps them."""
    stds = {}
    for opt in ("adam", "adamw"):
        cfg = cfg_for(data, tmp_path, num_iters=30, optimizer=opt, warm_up=0, eval_every=1000, lr_s=0.01)
        trainer = Trainer(cfg, build_train_set(cfg, progress=False), None, create_run_dir(cfg, tmp_path / opt))
        before = {k: v.clone() for k, v in trainer.net_s.state_dict().items() if "pos" in k}
        trainer.fit()
        after = {k: v for k, v in trainer.net_s.state_dict().items() if k in before}
        key = sorted(before)[0]
        stds[opt] = (after[key][64:].std() / before[key][64:].std()).item()
    assert stds["adam"] < 0.9 < stds["adamw"]


def test_folder_format_end_to_end(tmp_path):
    """Custom data: one [T, crops, D] .npy per video, a labels CSV, interval annotations; train, evaluate, test."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows, intervals = ["video,label"], []
    for i in range(12):
        label = i % 2
        T = int(rng.integers(30, 90))
        feats = rng.normal(size=(T, 2, 16)).astype(np.float32)
        if label:
            feats[T // 3: T // 2, :, 0] += 3.0
            intervals.append(f"clip{i} {16 * (T // 3)} {16 * (T // 2)}")
        np.save(tmp_path / f"clip{i}.npy", feats)
        rows.append(f"clip{i},{label}")
    (tmp_path / "videos.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "intervals.txt").write_text("\n".join(intervals) + "\n")
    overrides = [f"data.list_dir={tmp_path}", "data.format=folder", "data.train_list=videos.csv",
                 "data.test_list=videos.csv", "data.annotations=intervals.txt", "data.annotation_format=xd",
                 "data.feature_dim=16", "data.train_crops=2", "data.test_crops=2", "train.batch_size=4",
                 "train.num_iters=6", "train.warm_up=2", "train.eval_every=3", "train.progress=false",
                 f"output_dir={tmp_path / 'runs'}"]
    assert main(["train", "--preset", "demo-cpu-small", "--run_dir", str(tmp_path / "run"), *overrides]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["last"]["step"] == 6 and 0.0 <= summary["last"]["test"]["auc"] <= 1.0


def test_score_mix_feeds_branch_2_scores_into_the_pseudo_labels_after_the_warm_up(data, tmp_path):
    cfg = cfg_for(data, tmp_path, num_iters=8)
    cfg.plg.score_mix = 0.5
    trainer = Trainer(cfg, build_train_set(cfg, progress=False), None, create_run_dir(cfg, tmp_path / "run"))
    x = trainer.features[:4]
    attention = torch.rand(4, x.shape[1])
    assert trainer.pseudo_label_source(attention, x, step=cfg.train.warm_up) is attention  # warm-up: untouched
    rng = torch.get_rng_state()
    mixed = trainer.pseudo_label_source(attention, x, step=cfg.train.warm_up + 1)
    assert torch.equal(torch.get_rng_state(), rng)  # eval mode: the run's random numbers are not consumed
    from adplg.training.pseudo_labels import minmax
    with torch.no_grad():
        expected = 0.5 * attention + 0.5 * minmax(trainer.net_s.eval()(x))
    torch.testing.assert_close(mixed, expected)
    trainer.fit()  # trains end to end with the mixed source
    cfg.plg.score_mix = 0.0
    assert Trainer(cfg, trainer.train_set, None, tmp_path / "plain").pseudo_label_source(attention, x, 99) is attention


def test_branch_2_augmentations_transform_features_and_targets_together(data, tmp_path):
    from adplg.training.augment import random_temporal_crop

    cfg = cfg_for(data, tmp_path, num_iters=8)
    trainer = Trainer(cfg, build_train_set(cfg, progress=False), None, create_run_dir(cfg, tmp_path / "run"))
    x = trainer.features[:4]
    targets = torch.rand(4, x.shape[1])
    keep = targets > 0.3
    rng = torch.get_rng_state()
    same = trainer.augment_snippet_batch(x, targets, keep)
    assert all(a is b for a, b in zip(same, (x, targets, keep, None)))  # off by default: untouched, nothing drawn
    assert torch.equal(torch.get_rng_state(), rng)

    cfg.train.flip_prob = 1.0
    fx, ft, fk, fs = trainer.augment_snippet_batch(x, targets, keep, targets)
    assert torch.equal(fx, x.flip(1)) and torch.equal(ft, targets.flip(1)) and torch.equal(fk, keep.flip(1))
    assert torch.equal(fs, targets.flip(1))  # a teacher's soft targets move with their snippets too
    cfg.train.flip_prob, cfg.train.feature_noise = 0.0, 0.5
    nx, nt, _, _ = trainer.augment_snippet_batch(x, targets, keep)
    assert torch.equal(nt, targets) and 0.3 < ((nx - x) / trainer.feature_std).std() < 0.7

    # a crop of at least half the steps: every output step lies inside one span that the targets follow
    ramp = torch.arange(20.0).repeat(6, 1)
    cx, ct, ck = random_temporal_crop(ramp[..., None], ramp, ramp > 9, 0.5)
    for row_x, row_t, row_k in zip(cx[..., 0], ct, ck):
        assert torch.all(row_x[1:] >= row_x[:-1]) and row_x[-1] - row_x[0] >= 9  # monotone, >= half the span
        assert torch.all((row_t - row_x).abs() <= 0.5) and torch.equal(row_k, row_t > 9)
    assert torch.equal(random_temporal_crop(ramp[..., None], ramp, ramp > 9, 1.0)[1], ramp)  # scale 1: identity
    cfg.train.crop_scale = 0.5
    cfg.loss.snippet_topk_mil = 1.0
    trainer.fit()  # trains end to end with the augmentations and the top-k MIL term


def test_topk_mil_loss_scores_videos_by_their_top_snippets():
    from adplg.losses import topk_mil_loss

    scores = torch.full((2, 32), 0.1)
    scores[1, :2] = 0.9  # k = ceil(32 / 16) = 2: the abnormal video's top-2 mean is 0.9
    labels = torch.tensor([0.0, 1.0])
    expected = -(torch.log(torch.tensor(0.9)) + torch.log(torch.tensor(0.9))) / 2
    torch.testing.assert_close(topk_mil_loss(scores, labels), expected)
    scores[1, 2] = 0.99  # the top-2 now 0.99 and 0.9
    assert topk_mil_loss(scores, labels) < expected
