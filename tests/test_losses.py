"""Branch loss terms (METHOD §2.4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adplg.errors import AdplgError
from adplg.losses import (
    cosine_dissimilarity_loss,
    smooth_loss,
    snippet_loss,
    sparsity_loss,
    triplet_loss,
    video_branch_losses,
)
from adplg.models import VideoBranch


def _snippet_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(4, 32, generator=g) * 0.98 + 0.01
    targets = torch.cat((torch.zeros(2, 32), torch.rand(2, 32, generator=g)))
    keep = torch.rand(4, 32, generator=g) > 0.3
    return scores, targets, keep


@pytest.mark.parametrize("faithful", [True, False])
def test_snippet_loss_is_mean_over_kept_elements(faithful):
    scores, targets, keep = _snippet_batch()
    expect = F.binary_cross_entropy(scores[keep], targets[keep])
    got = snippet_loss(scores, targets, keep, faithful_nan_trick=faithful)
    assert torch.allclose(got, expect, atol=1e-6)
    all_kept = snippet_loss(scores, targets, torch.ones_like(keep), faithful_nan_trick=faithful)
    assert torch.allclose(all_kept, F.binary_cross_entropy(scores, targets), atol=1e-6)


def test_faithful_trick_drops_exact_zero_losses():
    scores, targets, keep = _snippet_batch(1)
    keep[0, 0] = True
    scores[0, 0] = 0.0  # a kept normal snippet scored exactly 0 against target 0: BCE exactly 0
    faithful = snippet_loss(scores, targets, keep, faithful_nan_trick=True)
    plain = snippet_loss(scores, targets, keep, faithful_nan_trick=False)
    kept_nonzero = keep.clone()
    kept_nonzero[0, 0] = False
    assert torch.allclose(faithful, F.binary_cross_entropy(scores[kept_nonzero], targets[kept_nonzero]), atol=1e-6)
    assert torch.allclose(plain, F.binary_cross_entropy(scores[keep], targets[keep]), atol=1e-6)
    assert faithful > plain


def test_snippet_loss_gradients_skip_dropped_and_empty_is_zero():
    scores, targets, keep = _snippet_batch(2)
    scores.requires_grad_(True)
    snippet_loss(scores, targets, keep).backward()
    assert (scores.grad[~keep] == 0).all()
    assert (scores.grad[keep] != 0).all()
    s = torch.rand(2, 5, requires_grad=True)
    for faithful in (True, False):
        loss = snippet_loss(s, torch.rand(2, 5), torch.zeros(2, 5, dtype=torch.bool), faithful_nan_trick=faithful)
        assert loss.item() == 0.0
        loss.backward()
    with pytest.raises(AdplgError, match="same shape"):
        snippet_loss(torch.rand(2, 5), torch.rand(2, 4), torch.ones(2, 5, dtype=torch.bool))


def test_smooth_and_sparsity_axes():
    att = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
    # batch: shift rows -> [[4, 8], [4, 8]] -> 3^2 + 6^2 ; time: shift columns -> [[2, 2], [8, 8]] -> 1 + 4^2
    assert smooth_loss(att, "batch").item() == pytest.approx(45.0)
    assert smooth_loss(att, "time").item() == pytest.approx(17.0)
    assert sparsity_loss(att, "batch").item() == pytest.approx((17 ** 0.5 + 68 ** 0.5) / 2)
    assert sparsity_loss(att, "time").item() == pytest.approx((5 ** 0.5 + 80 ** 0.5) / 2)
    with pytest.raises(AdplgError):
        smooth_loss(att, "frames")


def test_triplet_and_cosine_formulas():
    g = torch.Generator().manual_seed(0)
    fn, fan, fa = (torch.randn(3, 8, generator=g) for _ in range(3))
    d_pos = (fn - fan + 1e-6).norm(dim=1)
    d_neg = (fn - fa + 1e-6).norm(dim=1)
    assert torch.allclose(triplet_loss(fn, fan, fa), (d_pos - d_neg + 1.0).clamp(min=0).mean(), atol=1e-6)
    sa, san = torch.rand(3, 10, generator=g), torch.rand(3, 10, generator=g)
    cos = (sa * san).sum(1) / (sa.norm(dim=1) * san.norm(dim=1))
    assert torch.allclose(cosine_dissimilarity_loss(sa, san), cos.sum() / 3, atol=1e-6)


def _video_output():
    torch.manual_seed(0)
    net = VideoBranch(dropout=0.0)
    return net, net(torch.rand(4, 16, 1024))


def test_video_branch_losses_weights_and_axes():
    net, out = _video_output()
    labels = torch.tensor([0, 0, 1, 1])
    t = video_branch_losses(out, labels)
    parts = (t.video_bce, t.triplet, t.cos, t.smooth, t.sparsity)
    assert torch.allclose(t.total, sum(parts))
    assert torch.allclose(t.video_bce, F.binary_cross_entropy(out.scores, labels.float()))
    w = {"video_bce": 2.0, "triplet": 0.0, "cos": 0.5, "smooth": 0.0, "sparsity": 3.0}
    tw = video_branch_losses(out, labels, weights=w)
    assert torch.allclose(tw.total, 2 * t.video_bce + 0.5 * t.cos + 3 * t.sparsity)
    alias = video_branch_losses(out, labels, weights={"video": 2.0, "triplet": 0.0, "smooth": 0.0, "cos": 0.0,
                                                      "sparsity": 0.0})
    assert torch.allclose(alias.total, 2 * t.video_bce)
    tt = video_branch_losses(out, labels, smooth_axis="time")
    assert not torch.allclose(tt.smooth, t.smooth)
    assert torch.allclose(tt.sparsity, t.sparsity)
    ts = video_branch_losses(out, labels, sparsity_axis="time")
    assert not torch.allclose(ts.sparsity, t.sparsity)
    with pytest.raises(AdplgError, match="unknown video loss weight"):
        video_branch_losses(out, labels, weights={"snippet": 1.0})
    t.total.backward()
    assert net.vssf.query.weight.grad is not None and net.classifier.fc1.weight.grad is not None
