import pytest
import torch

from adplg.training.pseudo_labels import PseudoLabelGenerator, minmax


def reference_labels(history: dict, keys, att, n, tau_a, tau_v):
    """The spec of METHOD.md 2.5 written as the official per-sample list loop."""
    targets, keeps = [], []
    for k, a in zip(keys.tolist(), att):
        h = history.setdefault(k, [])
        if len(h) < n:
            h.append(a.clone())
            targets.append(a.clone())
            keeps.append(torch.ones_like(a, dtype=torch.bool))
        else:
            h.append(a.clone())
            h.pop(0)
            stack = torch.stack(h)
            mu = minmax(stack.mean(0))
            var = minmax(stack.var(0))
            targets.append((mu >= tau_a).float())
            keeps.append(var <= tau_v)
    return torch.stack(targets), torch.stack(keeps)


def test_soft_labels_until_history_full():
    plg = PseudoLabelGenerator(num_keys=3, num_segments=8, history=3, mean_threshold=0.25, var_threshold=0.4)
    keys = torch.tensor([0, 1])
    for visit in range(3):
        att = minmax(torch.rand(2, 8))
        out = plg.update(keys, att)
        assert torch.equal(out.targets, att)
        assert out.keep.all() and not out.hard.any()
    out = plg.update(keys, minmax(torch.rand(2, 8)))
    assert out.hard.all()
    assert set(out.targets.unique().tolist()) <= {0.0, 1.0}


def test_hard_labels_have_a_one_a_zero_and_drop_max_variance():
    torch.manual_seed(0)
    plg = PseudoLabelGenerator(num_keys=1, num_segments=16, history=3, mean_threshold=0.25, var_threshold=0.4)
    keys = torch.tensor([0])
    for _ in range(5):
        out = plg.update(keys, minmax(torch.rand(1, 16)))
    assert out.targets.max() == 1 and out.targets.min() == 0
    var = plg.buffer[0].var(dim=0)
    assert not out.keep[0, var.argmax()]


def test_matches_sequential_reference_with_shared_keys():
    """UCF: several crops of one video share a key and can meet in one batch; later ones see earlier entries."""
    g = torch.Generator().manual_seed(1)
    plg = PseudoLabelGenerator(num_keys=5, num_segments=12, history=3, mean_threshold=0.25, var_threshold=0.4)
    history: dict = {}
    for step in range(30):
        keys = torch.randint(0, 5, (8,), generator=g)
        att = minmax(torch.rand(8, 12, generator=g))
        ours = plg.update(keys, att)
        ref_t, ref_k = reference_labels(history, keys, att, 3, 0.25, 0.4)
        torch.testing.assert_close(ours.targets, ref_t, atol=1e-6, rtol=0)
        assert torch.equal(ours.keep, ref_k), step


def test_state_round_trip_continues_identically():
    g = torch.Generator().manual_seed(2)
    a = PseudoLabelGenerator(num_keys=4, num_segments=6, history=4, mean_threshold=0.2, var_threshold=0.4)
    batches = [(torch.randint(0, 4, (3,), generator=g), minmax(torch.rand(3, 6, generator=g))) for _ in range(12)]
    for keys, att in batches[:6]:
        a.update(keys, att)
    b = PseudoLabelGenerator(num_keys=4, num_segments=6, history=4, mean_threshold=0.2, var_threshold=0.4)
    b.load_state_dict(a.state_dict())
    for keys, att in batches[6:]:
        oa, ob = a.update(keys, att), b.update(keys, att)
        assert torch.equal(oa.targets, ob.targets) and torch.equal(oa.keep, ob.keep)


def test_label_smoothing_moves_only_hard_labels():
    g = torch.Generator().manual_seed(3)
    batches = [(torch.tensor([0, 1]), minmax(torch.rand(2, 10, generator=g))) for _ in range(5)]
    plain = PseudoLabelGenerator(num_keys=2, num_segments=10, history=3, mean_threshold=0.25, var_threshold=0.4)
    smoothed = PseudoLabelGenerator(num_keys=2, num_segments=10, history=3, mean_threshold=0.25, var_threshold=0.4,
                                    label_smoothing=0.2)
    for visit, (keys, att) in enumerate(batches):
        p, s = plain.update(keys, att), smoothed.update(keys, att)
        assert torch.equal(p.keep, s.keep) and torch.equal(p.hard, s.hard)
        if visit < 3:  # soft labels (the attention itself) are left alone
            assert torch.equal(s.targets, att)
        else:  # 1 -> 0.9, 0 -> 0.1
            torch.testing.assert_close(s.targets, p.targets * 0.8 + 0.1)
            assert s.targets.min() == pytest.approx(0.1) and s.targets.max() == pytest.approx(0.9)
