"""Naive reference baselines, used to check that a dataset carries learnable signal (and how much)."""

from __future__ import annotations

import numpy as np

from adplg.errors import AdplgError


def _pool_segments(feat: np.ndarray, num_segments: int) -> np.ndarray:
    """Official ADPLG/RTFM resampling of a [L, D] feature array to [num_segments, D]:
    ``r = linspace(0, L, num_segments + 1).astype(int64)``; segment i is ``mean(F[r_i:r_{i+1}])``, or ``F[r_i]``
    when ``r_i == r_{i+1}`` (short videos repeat snippets, no zero padding)."""
    length = feat.shape[0]
    r = np.linspace(0, length, num_segments + 1).astype(np.int64)
    out = np.empty((num_segments, feat.shape[1]), dtype=np.float64)
    for i in range(num_segments):
        if r[i] == r[i + 1]:
            out[i] = feat[r[i]]
        else:
            out[i] = feat[r[i]:r[i + 1]].mean(axis=0)
    return out


def _check_feats(feats, what: str) -> int | None:
    dim = None
    for i, f in enumerate(feats):
        if f.ndim != 2 or f.shape[0] == 0:
            raise AdplgError(f"{what}[{i}] must be a non-empty [T, D] array, got shape {tuple(f.shape)}")
        if dim is None:
            dim = f.shape[1]
        elif f.shape[1] != dim:
            raise AdplgError(f"{what}[{i}] has feature dim {f.shape[1]}, expected {dim}")
    return dim


def logistic_regression_baseline(
    train_feats: list[np.ndarray],
    train_labels: np.ndarray,
    test_feats: list[np.ndarray],
    C: float = 0.1,
    num_segments: int | None = 64,
    seed: int = 0,
) -> list[np.ndarray]:
    """Per-snippet logistic regression trained with video labels only (the weakest sensible WSVAD baseline).

    Each training video ``train_feats[i]`` ([T_i, D]) is first resampled to ``num_segments`` segments with the
    official rule (skipped when ``num_segments`` is None); every segment is labelled with the video's label
    ``train_labels[i]`` (0 normal, 1 abnormal). Features are standardised (fitted on the training segments), then an
    L2-regularised sklearn ``LogisticRegression(C=C)`` is fitted. Returns, for each test video ([T_j, D]), the
    anomaly probability of every snippet, shape [T_j] (float64). To use several crops, pass each crop as a separate
    training video and average the returned scores of a test video's crops.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_feats = [np.asarray(f) for f in train_feats]
    test_feats = [np.asarray(f) for f in test_feats]
    labels = np.asarray(train_labels).reshape(-1)
    if len(train_feats) == 0:
        raise AdplgError("logistic_regression_baseline needs at least one training video")
    if len(labels) != len(train_feats):
        raise AdplgError(f"{len(train_feats)} training videos but {len(labels)} training labels")
    if not np.isin(labels, (0, 1)).all():
        raise AdplgError("training labels must be 0 (normal) or 1 (abnormal)")
    if len(np.unique(labels)) < 2:
        raise AdplgError("training labels must contain both normal (0) and abnormal (1) videos")
    if num_segments is not None and num_segments < 1:
        raise AdplgError(f"num_segments must be >= 1 or None, got {num_segments}")
    dim = _check_feats(train_feats, "train_feats")
    test_dim = _check_feats(test_feats, "test_feats")
    if test_dim is not None and test_dim != dim:
        raise AdplgError(f"test features have dim {test_dim}, training features have dim {dim}")

    xs, ys = [], []
    for f, y in zip(train_feats, labels):
        seg = _pool_segments(f, num_segments) if num_segments is not None else f.astype(np.float64)
        xs.append(seg)
        ys.append(np.full(len(seg), int(y)))
    x = np.concatenate(xs)
    y = np.concatenate(ys)

    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit(scaler.transform(x), y)
    if not test_feats:
        return []
    lengths = [len(f) for f in test_feats]
    probs = clf.predict_proba(scaler.transform(np.concatenate(test_feats).astype(np.float64)))[:, 1]
    return np.split(probs, np.cumsum(lengths)[:-1])
