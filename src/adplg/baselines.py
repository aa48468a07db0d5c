"""Naive reference baselines, used to check that a dataset carries learnable signal (and how much)."""

from __future__ import annotations

import numpy as np

from adplg.data.features import resample_segments
from adplg.errors import AdplgError

MIL_STEPS = 1000  # the MIL ranking baseline's training steps in every table of docs/benchmarks.md


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
        seg = resample_segments(f, num_segments) if num_segments is not None else f
        xs.append(seg.astype(np.float64))
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


def mil_ranking_baseline(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: list[np.ndarray],
                         steps: int = MIL_STEPS, batch_size: int = 30, lr: float = 1e-3,
                         seed: int = 0) -> list[np.ndarray]:
    """Deep MIL ranking (Sultani et al., CVPR 2018): an MLP snippet scorer trained so that the top snippet of an
    abnormal video outscores the top snippet of a normal one (hinge, margin 1), plus their temporal smoothness
    and sparsity terms (weights 8e-5). ``train_feats`` [N, T, D] (pooled videos), labels [N]; returns the scores
    [T_j] of every test video. Features are standardised with training statistics."""
    import torch
    from torch import nn

    x = torch.as_tensor(np.asarray(train_feats), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(train_labels)).reshape(-1)
    if x.dim() != 3 or len(labels) != len(x):
        raise AdplgError(f"train_feats must be [N, T, D] with one label per video, got {tuple(x.shape)} and "
                         f"{len(labels)} labels")
    mean, std = x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).std(0).clamp_min(1e-6)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[-1], 512), nn.ReLU(), nn.Dropout(0.6), nn.Linear(512, 32), nn.Dropout(0.6),
                        nn.Linear(32, 1), nn.Sigmoid())
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-3)
    normal, abnormal = (torch.nonzero(labels == c).flatten() for c in (0, 1))
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        n = normal[torch.randint(len(normal), (batch_size,), generator=g)]
        a = abnormal[torch.randint(len(abnormal), (batch_size,), generator=g)]
        s_n = net((x[n] - mean) / std).squeeze(-1)  # [b, T]
        s_a = net((x[a] - mean) / std).squeeze(-1)
        ranking = torch.relu(1 - s_a.max(1).values + s_n.max(1).values).mean()
        smooth = ((s_a[:, 1:] - s_a[:, :-1]) ** 2).sum(1).mean()
        loss = ranking + 8e-5 * smooth + 8e-5 * s_a.sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return [net((torch.as_tensor(f, dtype=torch.float32) - mean) / std).squeeze(-1).numpy() for f in test_feats]
