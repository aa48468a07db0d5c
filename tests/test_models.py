"""Shapes, input adapters, length limits and the official-checkpoint converter (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from adplg.errors import AdplgError
from adplg.models import (
    InputAdapter,
    SnippetBranch,
    VideoBranch,
    VideoBranchOutput,
    convert_official_state_dicts,
    is_official_state_dict,
    load_official_checkpoint,
)
from adplg.models.convert import _NET_S_ALIASES, _NET_S_MAP, _NET_V_MAP

SMALL = dict(model_dim=64, windows=(2, 3), local_heads=2, local_dim_head=16, local_out_dim=32, max_len=128,
             global_depth=1, global_heads=2, global_dim_head=16, mlp_dim=64)


@pytest.fixture(scope="module")
def snippet_default() -> SnippetBranch:
    torch.manual_seed(0)
    return SnippetBranch().eval()


# ----------------------------------------------------------------------------------------------- video branch
def test_video_branch_shapes_and_ranges():
    torch.manual_seed(0)
    net = VideoBranch().eval()
    with torch.no_grad():
        out = net(torch.rand(4, 64, 1024))
    assert isinstance(out, VideoBranchOutput)
    assert out.scores.shape == (4,)
    for name in ("a_att_norm", "a_att", "an_att"):
        assert getattr(out, name).shape == (2, 64), name
    for name in ("n_feats", "a_feats", "an_feats"):
        assert getattr(out, name).shape == (2, 512), name
    assert ((out.scores > 0) & (out.scores < 1)).all()
    assert torch.allclose(out.a_att.sum(-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(out.an_att.sum(-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(out.a_att_norm.min(-1).values, torch.zeros(2))
    assert torch.allclose(out.a_att_norm.max(-1).values, torch.ones(2), atol=1e-5)


def test_video_branch_halves_and_pairing():
    """Scores are ordered cat(normal, abnormal); abnormal features do not depend on the normal half, and the
    cross attention uses the normal query with the abnormal key."""
    torch.manual_seed(0)
    net = VideoBranch().eval()
    x = torch.rand(4, 16, 1024)
    x2 = x.clone()
    x2[:2] = torch.rand(2, 16, 1024)
    with torch.no_grad():
        a, b = net(x), net(x2)
        assert torch.allclose(a.a_feats, b.a_feats) and torch.allclose(a.a_att, b.a_att)
        assert not torch.allclose(a.an_att, b.an_att)
        assert torch.allclose(a.scores[2:], b.scores[2:]) and not torch.allclose(a.scores[:2], b.scores[:2])
        q = net.vssf.query(x[:2])
        k = net.vssf.key(x[2:])
        expect = ((q * k).sum(-1) / 512 ** 0.5).softmax(-1)
        assert torch.allclose(a.an_att, expect, atol=1e-6)


def test_video_branch_parameter_count_and_errors():
    assert sum(p.numel() for p in VideoBranch().parameters()) == 1_590_849  # METHOD §2.2
    with pytest.raises(AdplgError, match="even batch"):
        VideoBranch()(torch.rand(3, 8, 1024))
    with pytest.raises(AdplgError, match="1024"):
        VideoBranch()(torch.rand(2, 8, 512))


# --------------------------------------------------------------------------------------------- snippet branch
def test_snippet_branch_shapes_and_param_count(snippet_default):
    # 87,483,457 official parameters minus the 34,605,056 never used in forward (METHOD §2.3)
    assert sum(p.numel() for p in snippet_default.parameters()) == 52_878_401
    with torch.no_grad():
        y = snippet_default(torch.rand(4, 64, 1024))
    assert y.shape == (4, 64)
    assert ((y > 0) & (y < 1)).all()


@pytest.mark.parametrize("T", [37, 1000])
def test_snippet_branch_full_length_inference(snippet_default, T):
    with torch.no_grad():
        y = snippet_default(torch.rand(1, T, 1024))
    assert y.shape == (1, T)
    assert torch.isfinite(y).all()


def test_snippet_branch_too_long_raises():
    net = SnippetBranch(in_dim=64, **SMALL)
    with pytest.raises(AdplgError, match=r"T=129.*max_len=128"):
        net(torch.rand(1, 129, 64))
    assert net(torch.rand(1, 128, 64)).shape == (1, 128)


def test_snippet_branch_dense_equals_blocked():
    torch.manual_seed(1)
    net = SnippetBranch(in_dim=64, **SMALL).eval()
    x = torch.rand(2, 41, 64)
    with torch.no_grad():
        blocked = net(x)
        net.attention = "dense"
        dense = net(x)
    assert (blocked - dense).abs().max().item() <= 1e-5
    dense_built = SnippetBranch(in_dim=64, attention="dense", **SMALL)
    assert dense_built.attention == "dense"
    with pytest.raises(AdplgError):
        SnippetBranch(in_dim=64, attention="flash", **SMALL)


def test_snippet_branch_train_mode_backward():
    torch.manual_seed(2)
    net = SnippetBranch(in_dim=64, **SMALL).train()
    net(torch.rand(2, 16, 64)).mean().backward()
    assert net.embed.conv.weight.grad is not None
    assert net.local_blocks[0].pos_emb.weight.grad[:16].abs().sum() > 0


# ------------------------------------------------------------------------------------------------ input adapter
def test_input_adapter_modes():
    assert list(InputAdapter(1024, 1024, "linear").parameters()) == []
    assert list(InputAdapter(1024, 1024, "zero_pad").parameters()) == []
    lin = InputAdapter(512, 1024, "linear")
    assert lin.proj.weight.shape == (1024, 512)
    zp = InputAdapter(400, 1024, "zero_pad")
    assert list(zp.parameters()) == []
    x = torch.rand(2, 5, 400)
    assert torch.equal(zp(x), F.pad(x, (0, 624)))
    with pytest.raises(AdplgError, match="zero_pad"):
        InputAdapter(2048, 1024, "zero_pad")
    with pytest.raises(AdplgError, match="input_adapter"):
        InputAdapter(512, 1024, "conv")


@pytest.mark.parametrize("adapter", ["linear", "zero_pad"])
def test_512_d_inputs(adapter):
    torch.manual_seed(0)
    x = torch.rand(4, 16, 512)
    out = VideoBranch(in_dim=512, input_adapter=adapter).eval()(x)
    assert out.scores.shape == (4,) and out.a_feats.shape == (2, 512)
    net_s = SnippetBranch(in_dim=512, input_adapter=adapter, max_len=64).eval()
    with torch.no_grad():
        assert net_s(x).shape == (4, 16)
    has_proj = any(k.startswith("input_adapter.") for k in net_s.state_dict())
    assert has_proj == (adapter == "linear")


def test_zero_pad_equivalence():
    """A 400-d input with the zero_pad adapter equals the zero-padded 1024-d input on a 1024-d model."""
    torch.manual_seed(0)
    x = torch.rand(4, 23, 400)
    x_pad = F.pad(x, (0, 624))
    v400 = VideoBranch(in_dim=400, input_adapter="zero_pad").eval()
    v1024 = VideoBranch(in_dim=1024).eval()
    v1024.load_state_dict(v400.state_dict(), strict=True)
    with torch.no_grad():
        a, b = v400(x), v1024(x_pad)
    for name in ("scores", "a_att_norm", "a_att", "an_att", "n_feats", "a_feats", "an_feats"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    small = {**SMALL, "model_dim": 64}
    s40 = SnippetBranch(in_dim=40, input_adapter="zero_pad", **small).eval()
    s64 = SnippetBranch(in_dim=64, **small).eval()
    s64.load_state_dict(s40.state_dict(), strict=True)
    xs = torch.rand(2, 19, 40)
    with torch.no_grad():
        assert torch.equal(s40(xs), s64(F.pad(xs, (0, 24))))


def test_no_cuda_calls_in_models():
    src = Path(__file__).resolve().parents[1] / "src" / "adplg" / "models"
    for path in src.glob("*.py"):
        assert ".cuda(" not in path.read_text(), path.name


# -------------------------------------------------------------------------------------------------- converter
def _official_net_v(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, (_, shape) in _NET_V_MAP.items()}


def _official_net_s(with_extras: bool = True) -> dict[str, torch.Tensor]:
    """Official-layout net_s dict whose tensors are views of one shared storage (cheap to build and save);
    small tensors get distinct values."""
    shapes = {k: shape for k, (_, shape) in _NET_S_MAP.items()}
    if with_extras:
        for n in range(1, 5):
            shapes[f"LSA{n}.token_emb.weight"] = (256, 1024)
            shapes[f"LSA{n}.layers.0.1.0.weight"] = (1024,)
            shapes[f"LSA{n}.layers.0.1.0.bias"] = (1024,)
            shapes[f"LSA{n}.layers.0.1.1.weight"] = (5460, 1024)
            shapes[f"LSA{n}.layers.0.1.4.weight"] = (1024, 2730)
        shapes["norm.weight"] = (1024,)
        shapes["norm.bias"] = (1024,)
    base = torch.linspace(-1, 1, max(torch.Size(s).numel() for s in shapes.values()))
    g = torch.Generator().manual_seed(1)
    sd = {}
    for k, s in shapes.items():
        numel = torch.Size(s).numel()
        sd[k] = torch.randn(s, generator=g) if numel <= 1024 else base[:numel].view(s)
    if with_extras:
        for alias, target in _NET_S_ALIASES.items():
            sd[alias] = sd[target]
    return sd


def test_convert_net_v_loads_and_squeezes_conv():
    sd = _official_net_v()
    conv_v, conv_s = convert_official_state_dicts(net_v=sd)
    assert conv_s is None
    net = VideoBranch()
    net.load_state_dict(conv_v, strict=True)
    assert torch.equal(net.vssf.query.weight, sd["Snippts_Fuse.q.weight"][:, :, 0])
    assert torch.equal(net.classifier.fc2.bias, sd["classifier_v.3.bias"])


def test_convert_net_s_loads_strict_and_drops_unused(snippet_default):
    sd = _official_net_s()
    _, conv = convert_official_state_dicts(net_s=sd)
    assert not any("token_emb" in k or k.startswith("norm.") for k in conv)
    net = SnippetBranch()
    net.load_state_dict(conv, strict=True)
    assert torch.equal(net.local_blocks[3].attn.rotary.inv_freq,
                       sd["LSA4.layers.0.0.attn_fn.rel_pos.inv_freq"])
    assert torch.equal(net.classifier.fc1.weight, sd["classifier_s.0.weight"])
    # the never-used keys and the vars_s aliases are optional
    _, conv2 = convert_official_state_dicts(net_s=_official_net_s(with_extras=False))
    assert set(conv2) == set(conv) == set(snippet_default.state_dict())


def test_convert_errors():
    sd = _official_net_v()
    missing = dict(sd)
    del missing["Snippts_Fuse.k.bias"]
    with pytest.raises(AdplgError, match="missing.*Snippts_Fuse.k.bias"):
        convert_official_state_dicts(net_v=missing)
    wrong = dict(sd)
    wrong["classifier_v.0.weight"] = torch.zeros(32, 256)
    with pytest.raises(AdplgError, match=r"classifier_v.0.weight.*\[32, 256\].*\[32, 512\]"):
        convert_official_state_dicts(net_v=wrong)
    extra = dict(sd)
    extra["modal_fusion.weight"] = torch.zeros(1024, 512)
    with pytest.raises(AdplgError, match="unknown.*modal_fusion.weight"):
        convert_official_state_dicts(net_v=extra)
    s = _official_net_s()
    s["vars_s.2"] = s["vars_s.2"] + 1.0
    with pytest.raises(AdplgError, match="vars_s.2"):
        convert_official_state_dicts(net_s=s)


def test_is_official_state_dict():
    assert is_official_state_dict(_official_net_v()) == "net_v"
    assert is_official_state_dict({"module." + k: v for k, v in _official_net_v().items()}) == "net_v"
    assert is_official_state_dict(_official_net_s(with_extras=False)) == "net_s"
    assert is_official_state_dict(VideoBranch().state_dict()) is None
    assert is_official_state_dict({"foo": torch.zeros(1)}) is None
    assert is_official_state_dict([1, 2]) is None


def test_load_official_checkpoint_round_trip(tmp_path):
    sd_v = _official_net_v(seed=3)
    torch.save(sd_v, tmp_path / "ucf_model_v.pkl")
    kind, conv = load_official_checkpoint(tmp_path / "ucf_model_v.pkl")
    assert kind == "net_v"
    net = VideoBranch()
    net.load_state_dict(conv, strict=True)
    assert torch.equal(net.vssf.value.bias, sd_v["Snippts_Fuse.v.bias"])

    sd_s = _official_net_s()
    torch.save(sd_s, tmp_path / "ucf_model_s.pkl")
    kind, conv = load_official_checkpoint(str(tmp_path / "ucf_model_s.pkl"))
    assert kind == "net_s"
    assert torch.equal(conv["classifier.fc2.weight"], sd_s["classifier_s.3.weight"])
    assert conv["local_blocks.0.pos_emb.weight"].shape == (6750, 1024)


def test_load_official_checkpoint_errors(tmp_path):
    with pytest.raises(AdplgError, match="not found"):
        load_official_checkpoint(tmp_path / "absent.pkl")
    (tmp_path / "garbage.pkl").write_bytes(b"not a checkpoint")
    with pytest.raises(AdplgError, match="cannot read"):
        load_official_checkpoint(tmp_path / "garbage.pkl")
    torch.save([torch.zeros(1)], tmp_path / "list.pkl")
    with pytest.raises(AdplgError, match="not a state_dict"):
        load_official_checkpoint(tmp_path / "list.pkl")
    torch.save(VideoBranch().state_dict(), tmp_path / "ours.pkl")
    with pytest.raises(AdplgError, match="not an official"):
        load_official_checkpoint(tmp_path / "ours.pkl")
