"""Numerical parity with the official modules, through the fixture in ``../shared/parity`` (see its README).

The official weights are regenerated from the public recipe, converted with our converter, loaded into our
modules and every recorded output and loss is compared.
"""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
import torch

from adplg.losses import snippet_loss, video_branch_losses
from adplg.models import SnippetBranch, VideoBranch, convert_official_state_dicts, minmax_normalise
from adplg.models.convert import _NET_S_ALIASES, _NET_S_MAP, _NET_S_UNUSED, _NET_V_MAP

TOL_SCORE = 1e-5
TOL_FEAT = 1e-4
TOL_LOSS = 1e-5


def _recipe_tensor(entry: dict) -> torch.Tensor:
    key, shape, init = entry["key"], entry["shape"], entry["init"]
    if init == "keep":  # rotary inverse frequencies hold their true values
        return 1.0 / (10000 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    w = torch.randn(shape, generator=g, dtype=torch.float32) * 0.05
    if init == "one_plus":
        w = w + 1.0
    elif init != "normal":
        raise AssertionError(f"unexpected init kind {init!r} for {key}")
    return w


@pytest.fixture(scope="module")
def key_table(parity_dir) -> dict:
    return json.loads((parity_dir / "official_state_dict_keys.json").read_text())


@pytest.fixture(scope="module")
def official(key_table) -> dict[str, dict[str, torch.Tensor]]:
    """Recipe weights in the official layout, checked key by key against the fixture's float64 sum/sumsq."""
    out = {}
    for net, entries in key_table.items():
        sd: dict[str, torch.Tensor] = {}
        for e in entries:
            if e["init"] == "alias":
                continue
            w = _recipe_tensor(e)
            assert list(w.shape) == e["shape"], e["key"]
            d = w.double()
            s, ss = d.sum().item(), (d * d).sum().item()
            assert math.isclose(s, e["sum"], rel_tol=1e-7, abs_tol=1e-6), \
                f"recipe differs for {e['key']}: sum {s} vs {e['sum']}"
            assert math.isclose(ss, e["sumsq"], rel_tol=1e-7, abs_tol=1e-6), \
                f"recipe differs for {e['key']}: sumsq {ss} vs {e['sumsq']}"
            sd[e["key"]] = w
        for e in entries:
            if e["init"] == "alias":
                sd[e["key"]] = sd[e["alias_of"]]  # the same tensor, as in the official module
        out[net] = sd
    return out


@pytest.fixture(scope="module")
def converted(official):
    return convert_official_state_dicts(official["net_v"], official["net_s"])


@pytest.fixture(scope="module")
def expected(parity_dir) -> dict[str, torch.Tensor]:
    with np.load(parity_dir / "expected_outputs.npz") as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


def _inp(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return {"T64": _inp(1234, (4, 64, 1024)), "T37": _inp(99, (2, 37, 1024)), "T150": _inp(7, (2, 150, 1024))}


@pytest.fixture(scope="module")
def snippet_eval(converted) -> SnippetBranch:
    net = SnippetBranch(in_dim=1024)
    net.load_state_dict(converted[1], strict=True)
    return net.eval()


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.detach().float() - b.float()).abs().max().item()


def test_converter_covers_official_layout(key_table):
    """Every official key is either converted, an alias, or a known never-used parameter, with the same shape."""
    for net, table, aliases, unused in (("net_v", _NET_V_MAP, {}, None),
                                        ("net_s", _NET_S_MAP, _NET_S_ALIASES, _NET_S_UNUSED)):
        keys = {e["key"]: tuple(e["shape"]) for e in key_table[net]}
        for k, shape in keys.items():
            if k in table:
                assert table[k][1] == shape, k
            elif k in aliases:
                assert dict((e["key"], e.get("alias_of")) for e in key_table[net])[k] == aliases[k]
            else:
                assert unused is not None and unused.match(k), f"{net}: official key {k} not handled"
        assert set(table) <= set(keys), f"{net}: converter expects keys the official layout lacks"


def test_video_branch_outputs(converted, expected, inputs):
    net = VideoBranch(in_dim=1024)
    net.load_state_dict(converted[0], strict=True)
    with torch.no_grad():
        out = net.eval()(inputs["T64"])
    checks = {
        "net_v/scores_v": (out.scores[:, None], TOL_SCORE),
        "net_v/a_att_norm": (out.a_att_norm, TOL_SCORE),
        "net_v/a_n_att_norm": (minmax_normalise(out.an_att), TOL_SCORE),
        "net_v/a_att": (out.a_att, TOL_SCORE),
        "net_v/a_n_att": (out.an_att, TOL_SCORE),
        "net_v/feats_v": (torch.cat((out.n_feats, out.a_feats)), TOL_FEAT),
        "net_v/a_feats": (out.a_feats, TOL_FEAT),
        "net_v/a_n_feats": (out.an_feats, TOL_FEAT),
        "net_v/n_feats": (out.n_feats, TOL_FEAT),
    }
    assert set(checks) == {k for k in expected if k.startswith("net_v/")}
    for key, (ours, tol) in checks.items():
        assert _maxdiff(ours, expected[key]) <= tol, f"{key}: max abs diff {_maxdiff(ours, expected[key])}"


@pytest.mark.parametrize("attention", ["blocked", "dense"])
def test_snippet_branch_outputs(snippet_eval, expected, inputs, attention):
    snippet_eval.attention = attention
    try:
        with torch.no_grad():
            for name, x in inputs.items():
                diff = _maxdiff(snippet_eval(x), expected[f"net_s/scores_{name}"])
                assert diff <= TOL_SCORE, f"net_s/scores_{name} ({attention}): max abs diff {diff}"
    finally:
        snippet_eval.attention = "blocked"


def test_training_step_losses(parity_dir, converted, inputs):
    exp = json.loads((parity_dir / "expected_losses.json").read_text())
    x = inputs["T64"]
    net_v = VideoBranch(in_dim=1024, dropout=0.0)
    net_v.load_state_dict(converted[0], strict=True)
    net_s = SnippetBranch(in_dim=1024, dropout=0.0, cls_dropout=0.0)
    net_s.load_state_dict(converted[1], strict=True)
    net_v.train()
    net_s.train()
    out = net_v(x)
    terms = video_branch_losses(out, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    got = {"video_bce": terms.video_bce, "triplet": terms.triplet, "cos": terms.cos, "smooth": terms.smooth,
           "sparsity": terms.sparsity, "total_v": terms.total}
    bh = x.shape[0] // 2
    targets = torch.cat((torch.zeros(bh, x.shape[1]), out.a_att_norm.detach()))
    keep = torch.ones_like(targets, dtype=torch.bool)
    got["snippet_bce"] = snippet_loss(net_s(x), targets, keep)
    assert set(got) == set(exp)
    for name, value in got.items():
        assert abs(value.item() - exp[name]) <= TOL_LOSS, f"{name}: {value.item()} vs {exp[name]}"
    terms.total.backward()  # the graph is intact
