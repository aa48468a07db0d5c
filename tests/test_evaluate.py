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
