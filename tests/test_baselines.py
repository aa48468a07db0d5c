import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from adplg.baselines import logistic_regression_baseline, mil_ranking_baseline
from adplg.data.features import resample_segments as _pool_segments
from adplg.errors import AdplgError


def test_pool_segments_official_rule():
    feat = np.arange(10, dtype=np.float32).reshape(10, 1)
    pooled = _pool_segments(feat, 4)  # r = [0, 2, 5, 7, 10]
    np.testing.assert_allclose(pooled[:, 0], [0.5, 3.0, 5.5, 8.0])
    short = np.arange(3, dtype=np.float32).reshape(3, 1)
    pooled = _pool_segments(short, 5)  # r = [0, 0, 1, 1, 2, 3]: equal bounds repeat F[r_i]
    np.testing.assert_allclose(pooled[:, 0], [0, 0, 1, 1, 2])


def _toy(rng, n_videos, dim=8, length=(20, 60)):
    feats, labels, snippet_gt = [], [], []
    direction = np.zeros(dim)
    direction[0] = 1.0
    for i in range(n_videos):
        t = int(rng.integers(*length))
        x = rng.standard_normal((t, dim)).astype(np.float32)
        g = np.zeros(t, dtype=np.int64)
        if i % 2:
            s = int(rng.integers(0, t - 5))
            g[s:s + 5] = 1
            x[g == 1] += 3.0 * direction
        feats.append(x)
        labels.append(i % 2)
        snippet_gt.append(g)
    return feats, np.array(labels), snippet_gt


@pytest.mark.parametrize("num_segments", [16, None])
def test_learns_a_simple_signal(num_segments):
    rng = np.random.default_rng(0)
    tr_x, tr_y, _ = _toy(rng, 60)
    te_x, _, te_g = _toy(rng, 20)
    scores = logistic_regression_baseline(tr_x, tr_y, te_x, num_segments=num_segments)
    assert [s.shape for s in scores] == [(len(x),) for x in te_x]
    assert all(((s >= 0) & (s <= 1)).all() for s in scores)
    assert roc_auc_score(np.concatenate(te_g), np.concatenate(scores)) > 0.9


def test_deterministic():
    rng = np.random.default_rng(1)
    tr_x, tr_y, _ = _toy(rng, 20)
    a = logistic_regression_baseline(tr_x, tr_y, tr_x[:3])
    b = logistic_regression_baseline(tr_x, tr_y, tr_x[:3])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_errors():
    rng = np.random.default_rng(2)
    tr_x, tr_y, _ = _toy(rng, 6)
    with pytest.raises(AdplgError, match="6 training videos but 5"):
        logistic_regression_baseline(tr_x, tr_y[:5], tr_x)
    with pytest.raises(AdplgError, match="both"):
        logistic_regression_baseline(tr_x, np.ones(6), tr_x)
    with pytest.raises(AdplgError, match="dim"):
        logistic_regression_baseline(tr_x, tr_y, [np.zeros((5, 3))])


def test_mil_ranking_baseline_finds_the_anomalous_snippets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 32, 8)).astype(np.float32)
    labels = np.array([0] * 20 + [1] * 20)
    x[20:, 10:14, 0] += 4.0  # abnormal videos: a burst on channel 0
    test = rng.normal(size=(32, 8)).astype(np.float32)
    test[5:9, 0] += 4.0
    scores = mil_ranking_baseline(x, labels, [test], steps=300, seed=0)[0]
    assert scores.shape == (32,)
    assert scores[5:9].mean() > scores[np.r_[0:5, 9:32]].mean() + 0.2
