"""Test-set assembly and scoring on a tiny XD-format dataset written here (5 crops, XD names and annotations)."""

import numpy as np
import pytest
import torch
from torch import nn

from adplg.config import build_config
from adplg.data.datasets import build_test_set
from adplg.evaluation.evaluate import evaluate, frame_scores

VIDEOS = [("Movie.A__#00-01-00_00-02-00_label_B1-0-0", 6, [(16, 48)]),
          ("Movie.B__#00-03-00_00-04-00_label_G-B2-0", 5, [(0, 32), (64, 80)]),
          ("Movie.C__#00-05-00_00-06-00_label_A", 4, [])]


class FirstChannel(nn.Module):
    """A stand-in scorer: sigmoid of feature channel 0 -> [B, T]."""

    def forward(self, x):
        return torch.sigmoid(x[..., 0])


@pytest.fixture()
def xd_cfg(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for name, T, intervals in VIDEOS:
        gt = np.zeros(T * 16)
        for s, e in intervals:
            gt[s:e] = 1
        for crop in range(5):
            feats = rng.normal(size=(T, 8)).astype(np.float32)
            feats[:, 0] = gt.reshape(T, 16).mean(1) * 4 - 2 + 0.1 * crop  # channel 0 follows the GT
            path = tmp_path / "feats" / f"{name}__{crop}.npy"
            path.parent.mkdir(exist_ok=True)
            np.save(path, feats)
            lines.append(f"/authors/machine/RGBTest/{name}__{crop}.npy")
    (tmp_path / "XD_Test.list").write_text("\n".join(lines) + "\n")
    (tmp_path / "XD_annotations.txt").write_text(
        "".join(f"{n} " + " ".join(f"{s} {e}" for s, e in iv) + "\n" for n, _, iv in VIDEOS if iv))
    return build_config("xd-i3d", overrides=[f"data.list_dir={tmp_path}", f"data.feature_root={tmp_path / 'feats'}",
                                             "data.feature_dim=8"])


def test_xd_test_set_gt_and_classes(xd_cfg):
    test = build_test_set(xd_cfg, progress=False)
    assert [v.name for v in test.videos] == [v[0] for v in VIDEOS]
    assert list(np.diff(test.gt.offsets)) == [96, 80, 64]
    assert test.gt.labels.sum() == 32 + 48
    assert list(test.video_labels) == [1, 1, 0]
    assert test.video_classes == ["B1-0-0", "G-B2-0", "A"]


def test_evaluate_averages_crops_and_expands_to_frames(xd_cfg):
    test = build_test_set(xd_cfg, progress=False)
    metrics, scores = evaluate(FirstChannel(), test)
    for v, s in enumerate(scores):
        expected = torch.sigmoid(torch.from_numpy(test.crops(v)[..., 0])).mean(0).numpy()
        np.testing.assert_allclose(s, expected, rtol=1e-6)
    assert len(frame_scores(test, scores)) == len(test.gt.labels)
    assert metrics["auc"] == pytest.approx(1.0) and metrics["pr_auc"] == pytest.approx(1.0)
    assert set(metrics["per_class_pr_auc"]) == {"B1", "B2", "G"}


def test_length_batches_group_equal_lengths_within_budget():
    from adplg.models.apply import length_batches

    batches = length_batches([5, 7, 5, 5, 7], [2, 2, 2, 2, 2], batch_snippets=20)
    assert sorted(map(sorted, batches)) == [[0, 2], [1], [3], [4]]
    assert length_batches([100], [10], batch_snippets=5) == [[0]]  # one video is never split


def test_batched_scoring_equals_one_video_at_a_time(tmp_path):
    from adplg.data.synthetic import generate_synthetic_ucf
    from adplg.evaluation.evaluate import predict_snippet_scores
    from adplg.models.build import build_snippet_branch

    data = generate_synthetic_ucf(tmp_path, num_train_normal=2, num_train_abnormal=2, num_test_normal=4,
                                  num_test_abnormal=4, max_snippets=24, seed=0)
    cfg = build_config("demo-cpu-small", overrides=[f"data.list_dir={data.root}"])
    test = build_test_set(cfg, progress=False)
    assert len(set(test.store.lengths.tolist())) < len(test.videos)  # some videos share a length
    torch.manual_seed(0)
    net = build_snippet_branch(cfg)
    batched = predict_snippet_scores(net, test, batch_snippets=10**6)
    single = predict_snippet_scores(net, test, batch_snippets=1)
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a, b, atol=1e-6)
    bf16 = predict_snippet_scores(net, test, precision="bf16")
    for a, b in zip(bf16, single):
        np.testing.assert_allclose(a, b, atol=3e-2)


def test_evaluation_and_the_one_video_runner_agree_past_max_len():
    """Evaluation's batched path and the one-video runner (``adplg score``, ``Scorer.score_array``, the online
    scorer) share the chunk and window code: a video longer than ``max_len`` is scored in the same overlapping
    windows, crops averaged, then smoothed; the model's training mode is restored afterwards."""
    from adplg.models.apply import batched_snippet_scores, video_snippet_scores
    from adplg.models.build import build_snippet_branch

    cfg = build_config("demo-cpu-small", overrides=["model.max_len=8", "data.feature_dim=16"])
    torch.manual_seed(0)
    net = build_snippet_branch(cfg)
    rng = np.random.default_rng(0)
    videos = [rng.normal(size=(crops, length, 16)).astype(np.float32) for crops, length in ((2, 20), (3, 20), (2, 5))]
    batched = batched_snippet_scores(net, videos.__getitem__, [v.shape[1] for v in videos], [len(v) for v in videos],
                                     smooth_window=3)
    for crops, got in zip(videos, batched, strict=True):
        assert got.shape == (crops.shape[1],)
        np.testing.assert_allclose(got, video_snippet_scores(net, crops, smooth_window=3), atol=1e-6)
    assert net.training
