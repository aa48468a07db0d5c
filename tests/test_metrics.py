import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from adplg.errors import AdplgError
from adplg.evaluation import frame_metrics, per_class_ap


def test_perfect_predictor():
    gt = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    m = frame_metrics(gt, gt * 0.9 + 0.05)
    assert m["auc"] == pytest.approx(1.0)
    assert m["pr_auc"] == pytest.approx(1.0)
    assert m["ap"] == pytest.approx(1.0)
    assert m["num_frames"] == 8
    assert math.isnan(m["auc_abnormal"]) and math.isnan(m["far"])  # no offsets/video labels given


def test_random_scores_near_half():
    rng = np.random.default_rng(0)
    gt = (rng.random(200_000) < 0.2).astype(np.int64)
    m = frame_metrics(gt, rng.random(gt.size))
    assert abs(m["auc"] - 0.5) < 0.01
    assert abs(m["pr_auc"] - 0.2) < 0.01


def test_pr_auc_and_ap_follow_their_sklearn_formulas():
    rng = np.random.default_rng(1)
    gt = (rng.random(500) < 0.3).astype(np.int64)
    scores = np.round(gt * 0.3 + rng.random(500), 2)  # ties included
    m = frame_metrics(gt, scores)
    precision, recall, _ = precision_recall_curve(gt, scores)
    assert m["pr_auc"] == pytest.approx(auc(recall, precision))
    assert m["ap"] == pytest.approx(average_precision_score(gt, scores))
    assert m["auc"] == pytest.approx(roc_auc_score(gt, scores))
    assert abs(m["pr_auc"] - m["ap"]) > 1e-4  # trapezoid vs step-wise: not the same number


def test_auc_abnormal_and_far():
    rng = np.random.default_rng(2)
    lengths = [32, 48, 16, 64, 40]
    labels = np.array([1, 1, 0, 0, 1])
    gts, scores = [], []
    for n, y in zip(lengths, labels):
        g = np.zeros(n, dtype=np.int64)
        if y:
            g[n // 4: n // 2] = 1
        gts.append(g)
        scores.append(rng.random(n) * 0.6 + 0.4 * g)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    gt, sc = np.concatenate(gts), np.concatenate(scores)
    m = frame_metrics(gt, sc, offsets, labels, far_threshold=0.5)
    ab = [i for i, y in enumerate(labels) if y]
    no = [i for i, y in enumerate(labels) if not y]
    expected_auc_a = roc_auc_score(np.concatenate([gts[i] for i in ab]), np.concatenate([scores[i] for i in ab]))
    assert m["auc_abnormal"] == pytest.approx(expected_auc_a)
    normal_scores = np.concatenate([scores[i] for i in no])
    assert m["far"] == pytest.approx(np.count_nonzero(normal_scores >= 0.5) / normal_scores.size)
    # FAR counts exactly: known scores on the normal videos
    sc2 = sc.copy()
    sc2[offsets[2]:offsets[4]] = 0.0
    sc2[offsets[2]:offsets[2] + 8] = 0.5  # 8 of 80 normal frames at the threshold
    assert frame_metrics(gt, sc2, offsets, labels)["far"] == pytest.approx(8 / 80)


def test_length_mismatch_message_has_both_lengths():
    with pytest.raises(AdplgError, match=r"(?s)1234.*1235"):
        frame_metrics(np.zeros(1234), np.zeros(1235))


def test_bad_inputs():
    with pytest.raises(AdplgError, match="offsets"):
        frame_metrics(np.array([0, 1, 0]), np.array([0.1, 0.9, 0.2]), np.array([0, 2]), np.array([1]))
    with pytest.raises(AdplgError, match="NaN"):
        frame_metrics(np.array([0, 1]), np.array([np.nan, 0.5]))
    with pytest.raises(AdplgError, match="0/1"):
        frame_metrics(np.array([0, 2]), np.array([0.1, 0.5]))


def test_single_class_gt_is_nan_with_warning():
    with pytest.warns(RuntimeWarning) as record:
        m = frame_metrics(np.zeros(10), np.linspace(0, 1, 10), np.array([0, 10]), np.array([0]))
    messages = [str(w.message) for w in record]
    assert any("only class 0" in msg for msg in messages)
    assert any("no frames of abnormal videos" in msg for msg in messages)
    assert math.isnan(m["auc"]) and math.isnan(m["ap"]) and math.isnan(m["pr_auc"])
    assert math.isnan(m["auc_abnormal"])
    assert m["far"] == pytest.approx(0.5)


def test_column_vector_inputs_are_accepted():
    gt = np.array([0, 1, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = frame_metrics(gt[:, None], np.array([0.1, 0.8, 0.7, 0.3])[:, None])
    assert m["auc"] == pytest.approx(1.0)


def test_per_class_ap_toy():
    # videos: B1 (4 frames), A (4), G (4), B1-G-0 multi-label (4), A (4)
    gt = np.array([0, 1, 1, 0,  0, 0, 0, 0,  1, 1, 0, 0,  0, 0, 1, 1,  0, 0, 0, 0])
    sc = np.array([.1, .9, .8, .2, .3, .1, .7, .2, .6, .4, .5, .1, .2, .3, .9, .8, .1, .1, .2, .3])
    offsets = np.arange(0, 21, 4)
    classes = ["B1", "A", "G", "B1-G-0", "A"]
    out = per_class_ap(gt, sc, offsets, classes)
    assert list(out) == ["B1", "G"]

    def pr_auc(videos):
        mask = np.concatenate([np.arange(offsets[v], offsets[v + 1]) for v in videos])
        p, r, _ = precision_recall_curve(gt[mask], sc[mask])
        return auc(r, p)

    assert out["B1"] == pytest.approx(pr_auc([0, 1, 3, 4]))
    assert out["G"] == pytest.approx(pr_auc([1, 2, 3, 4]))
    # a class whose videos are perfectly ranked above all normal frames
    perfect = per_class_ap(np.array([1, 0, 0]), np.array([0.9, 0.1, 0.2]), np.array([0, 1, 3]), ["B5", "A"])
    assert perfect == {"B5": pytest.approx(1.0)}
    with pytest.raises(AdplgError, match="videos"):
        per_class_ap(gt, sc, offsets, classes[:4])
