"""I3D and CLIP image-tower backbones: public checkpoint layouts, loaders, error messages, and forward passes
checked against independent reference computations. CPU only; random weights from ``backbone_weights``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from backbone_weights import random_clip_state, random_i3d_state, write_random_clip, write_random_i3d
from torch import Tensor, nn
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

from adplg.errors import AdplgError
from adplg.models.backbones.clip import CLIP_MEAN, CLIP_STD, CLIPImageEncoder, load_clip_vision, openai_to_hf_vision
from adplg.models.backbones.i3d import InceptionI3d, load_i3d, pad_same_3d, same_padding

# ------------------------------------------------------------------------------------------------------------- I3D

# A few keys of the public pytorch-i3d ``rgb_imagenet.pt`` with their shapes.
PUBLIC_I3D_KEYS = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.weight": (64,),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_1a_7x7.bn.num_batches_tracked": (),
    "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Conv3d_2c_3x3.bn.bias": (192,),
    "Mixed_4c.b0.conv3d.weight": (160, 512, 1, 1, 1),
    "Mixed_4c.b0.bn.running_mean": (160,),
    "Mixed_4c.b1a.conv3d.weight": (112, 512, 1, 1, 1),
    "Mixed_4c.b1b.conv3d.weight": (224, 112, 3, 3, 3),
    "Mixed_4c.b1b.bn.weight": (224,),
    "Mixed_4c.b2a.conv3d.weight": (24, 512, 1, 1, 1),
    "Mixed_4c.b2b.conv3d.weight": (64, 24, 3, 3, 3),
    "Mixed_4c.b3b.conv3d.weight": (64, 512, 1, 1, 1),
    "Mixed_4c.b3b.bn.running_var": (64,),
    "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1),
    "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "Mixed_5c.b3b.bn.bias": (128,),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}
I3D_KEY_COUNT = 344            # 57 conv+BN units x 6 keys + 2 logits keys
I3D_PARAMETERS = 12_697_264    # 12_287_264 up to Mixed_5c + 410_000 in the 400-class logits unit


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory) -> Path:
    return write_random_i3d(tmp_path_factory.mktemp("i3d") / "rgb_imagenet.pt", seed=1)


@pytest.fixture(scope="module")
def i3d_loaded(i3d_file) -> InceptionI3d:
    return load_i3d(i3d_file)


def test_i3d_state_dict_matches_public_layout():
    state = InceptionI3d().state_dict()
    for key, shape in PUBLIC_I3D_KEYS.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert not any(key.startswith(("Mixed_5c.b3a", "MaxPool")) for key in state)   # pools hold no parameters
    assert "logits.bn.weight" not in state and "Conv3d_1a_7x7.conv3d.bias" not in state
    assert len(state) == I3D_KEY_COUNT
    assert sum(p.numel() for p in InceptionI3d().parameters()) == I3D_PARAMETERS
    # The whole layout, as written independently in backbone_weights.
    layout = {key: tuple(value.shape) for key, value in random_i3d_state().items()}
    assert {key: tuple(value.shape) for key, value in state.items()} == layout


def test_i3d_batch_norm_settings():
    bn = InceptionI3d(num_classes=3).Mixed_4d.b1b.bn
    assert bn.eps == 1e-3 and bn.momentum == 0.01


@pytest.mark.parametrize(("in_size", "kernel", "stride", "expected"), [
    (224, 7, 2, (2, 3)), (16, 7, 2, (2, 3)), (112, 3, 2, (0, 1)), (56, 3, 1, (1, 1)), (8, 3, 2, (0, 1)),
    (4, 2, 2, (0, 0)), (5, 2, 2, (0, 1)), (7, 3, 2, (1, 1)), (1, 3, 1, (1, 1)), (3, 7, 2, (3, 3)), (2, 1, 1, (0, 0)),
])
def test_same_padding(in_size, kernel, stride, expected):
    out = math.ceil(in_size / stride)
    total = max((out - 1) * stride + kernel - in_size, 0)
    assert same_padding(in_size, kernel, stride) == (total // 2, total - total // 2) == expected
    front, back = expected
    assert (in_size + front + back - kernel) // stride + 1 == out


def test_pad_same_3d_gives_ceil_output_sizes():
    x = torch.randn(1, 2, 5, 9, 10)
    padded = pad_same_3d(x, (3, 3, 3), (2, 2, 2))
    assert tuple(F.max_pool3d(padded, 3, 2).shape[2:]) == (3, 5, 5)
    # SAME padding totals (2, 2, 1): split (1, 1), (1, 1), (0, 1), the odd element at the back.
    assert padded.shape[2:] == (7, 11, 11)
    assert torch.equal(padded[:, :, 1:6, 1:10, 0:10], x)


def test_i3d_features_are_mean_pooled_mixed_5c(i3d_loaded):
    torch.manual_seed(0)
    clip = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.no_grad():
        feature_map = i3d_loaded.feature_map(clip)
        features = i3d_loaded.features(clip)
        logits = i3d_loaded(clip)
    assert feature_map.shape == (1, 1024, 2, 7, 7)
    reference = nn.AvgPool3d((2, 7, 7), stride=1)(feature_map).flatten(1)
    assert features.shape == (1, 1024)
    torch.testing.assert_close(features, reference, rtol=1e-5, atol=1e-6)
    assert features.abs().mean() > 0.1   # the random weights keep activations alive to the end
    weight, bias = i3d_loaded.logits.conv3d.weight.flatten(1), i3d_loaded.logits.conv3d.bias
    torch.testing.assert_close(logits, reference @ weight.T + bias, rtol=1e-5, atol=1e-5)


def test_load_i3d_equals_manual_load(i3d_file, i3d_loaded):
    manual = InceptionI3d(num_classes=400)
    manual.load_state_dict(torch.load(i3d_file, map_location="cpu", weights_only=True), strict=True)
    manual.eval()
    assert not i3d_loaded.training
    clip = torch.rand(2, 3, 8, 64, 80) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(i3d_loaded.features(clip), manual.features(clip), rtol=0, atol=0)
    assert i3d_loaded.features(clip).shape == (2, 1024)


def test_load_i3d_accepts_wrapped_and_prefixed_dicts_and_infers_classes(tmp_path):
    state = random_i3d_state(seed=2, num_classes=7)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 3}, path)
    model = load_i3d(path)
    assert model.num_classes == 7
    torch.testing.assert_close(model.logits.conv3d.bias, state["logits.conv3d.bias"])
    torch.testing.assert_close(model.Mixed_5c.b3b.bn.running_var, state["Mixed_5c.b3b.bn.running_var"])


def test_load_i3d_missing_file(tmp_path):
    with pytest.raises(AdplgError, match="nope.pt.*not found"):
        load_i3d(tmp_path / "nope.pt")


def test_load_i3d_lists_every_key_problem(tmp_path):
    state = random_i3d_state(seed=3)
    state["Mixed_5c.b0.conv3d.weight"] = torch.zeros(384, 800, 1, 1, 1)
    del state["Mixed_4b.b2b.bn.running_mean"]
    state["Mixed_9z.b0.conv3d.weight"] = torch.zeros(1)
    path = tmp_path / "broken_i3d.pt"
    torch.save(state, path)
    with pytest.raises(AdplgError) as info:
        load_i3d(path)
    message = str(info.value)
    assert "broken_i3d.pt" in message and "3 problems" in message
    assert ("expected key Mixed_5c.b0.conv3d.weight of shape (384, 832, 1, 1, 1), got (384, 800, 1, 1, 1)"
            in message)
    assert "missing key Mixed_4b.b2b.bn.running_mean" in message
    assert "unexpected key Mixed_9z.b0.conv3d.weight" in message


def test_load_i3d_truncated_and_wrong_files(tmp_path, i3d_file):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(i3d_file.read_bytes()[: 1 << 20])
    with pytest.raises(AdplgError, match="truncated.pt"):
        load_i3d(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(AdplgError, match="notes.txt"):
        load_i3d(text)
    no_logits = tmp_path / "no_logits.pt"
    torch.save({"Conv3d_1a_7x7.conv3d.weight": torch.zeros(64, 3, 7, 7, 7)}, no_logits)
    with pytest.raises(AdplgError, match="no_logits.pt: expected key logits.conv3d.weight"):
        load_i3d(no_logits)
    a_list = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], a_list)
    with pytest.raises(AdplgError, match="list.pt: expected a state_dict"):
        load_i3d(a_list)


# ------------------------------------------------------------------------------------------------------------ CLIP


def openai_reference_embedding(state: dict[str, Tensor], pixels: Tensor) -> Tensor:
    """OpenAI CLIP ``VisionTransformer.forward``, written from the OpenAI layout: [B, 3, S, S] -> [B, output_dim]."""
    s = {key: value.float() for key, value in state.items() if key.startswith("visual.")}
    width, _, patch, _ = s["visual.conv1.weight"].shape
    layers = len({key.split(".")[3] for key in s if key.startswith("visual.transformer.resblocks.")})

    def layer_norm(x: Tensor, name: str) -> Tensor:
        return F.layer_norm(x, (width,), s[f"visual.{name}.weight"], s[f"visual.{name}.bias"], eps=1e-5)

    x = F.conv2d(pixels, s["visual.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)   # [B, grid^2, width]
    class_token = s["visual.class_embedding"].expand(x.shape[0], 1, width)
    x = torch.cat([class_token, x], dim=1) + s["visual.positional_embedding"]
    x = layer_norm(x, "ln_pre")
    for i in range(layers):
        block = f"transformer.resblocks.{i}"
        attention = nn.MultiheadAttention(width, width // 64, batch_first=True)
        attention.load_state_dict({name: s[f"visual.{block}.attn.{name}"] for name in
                                   ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")})
        attention.eval()
        h = layer_norm(x, f"{block}.ln_1")
        x = x + attention(h, h, h, need_weights=False)[0]
        h = F.linear(layer_norm(x, f"{block}.ln_2"), s[f"visual.{block}.mlp.c_fc.weight"],
                     s[f"visual.{block}.mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)   # QuickGELU
        x = x + F.linear(h, s[f"visual.{block}.mlp.c_proj.weight"], s[f"visual.{block}.mlp.c_proj.bias"])
    return layer_norm(x[:, 0], "ln_post") @ s["visual.proj"]


def normalised_pixels(batch: int, size: int, seed: int = 0) -> Tensor:
    rgb = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return (rgb - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


CLIP_SMALL = {"width": 128, "layers": 2, "patch": 16, "image_size": 224, "output_dim": 512}   # 2 heads of 64


def test_openai_file_matches_reference_forward(tmp_path):
    path = write_random_clip(tmp_path / "ViT-B-16.pt", seed=4, fp16=False, **CLIP_SMALL)
    encoder = load_clip_vision(path)
    assert isinstance(encoder, CLIPImageEncoder) and not encoder.training
    assert (encoder.image_size, encoder.feature_dim) == (224, 512)
    config = encoder.vision_model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (128, 2, 2)
    assert (config.patch_size, config.intermediate_size, config.hidden_act) == (16, 512, "quick_gelu")
    pixels = normalised_pixels(2, 224)
    with torch.no_grad():
        embedding = encoder(pixels)
        reference = openai_reference_embedding(random_clip_state(seed=4, fp16=False, **CLIP_SMALL), pixels)
    assert embedding.shape == (2, 512) and embedding.dtype == torch.float32
    torch.testing.assert_close(embedding, reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(embedding.norm(dim=-1), torch.ones(2))   # not L2-normalised


@pytest.mark.parametrize("jit", [False, True], ids=["state_dict", "torchscript"])
def test_fp16_openai_files_load_as_float32(tmp_path, jit):
    options = {"width": 64, "layers": 1, "patch": 32, "image_size": 64, "output_dim": 48}
    path = write_random_clip(tmp_path / "ViT-B-32.pt", seed=5, fp16=True, jit=jit, **options)
    encoder = load_clip_vision(path)
    assert all(p.dtype == torch.float32 for p in encoder.parameters())
    assert (encoder.image_size, encoder.feature_dim, encoder.vision_model.config.patch_size) == (64, 48, 32)
    pixels = normalised_pixels(3, 64, seed=1)
    with torch.no_grad():
        reference = openai_reference_embedding(random_clip_state(seed=5, fp16=True, **options), pixels)
        torch.testing.assert_close(encoder(pixels), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_keeps_the_openai_keys(tmp_path):
    path = write_random_clip(tmp_path / "scripted.pt", seed=6, jit=True, layers=1)
    keys = set(torch.jit.load(str(path), map_location="cpu").state_dict())
    assert keys == set(random_clip_state(seed=6, layers=1))
    assert {"visual.proj", "visual.transformer.resblocks.0.attn.in_proj_weight", "logit_scale"} <= keys


def test_openai_to_hf_vision_mapping():
    state = random_clip_state(seed=7, width=64, layers=3, patch=16, image_size=48, output_dim=32, fp16=True)
    config, hf_state = openai_to_hf_vision(state)
    assert isinstance(config, CLIPVisionConfig)
    assert (config.hidden_size, config.num_hidden_layers, config.image_size, config.projection_dim) == (64, 3, 48, 32)
    assert config.layer_norm_eps == 1e-5
    assert set(hf_state) == set(CLIPVisionModelWithProjection(config).state_dict())
    assert all(value.dtype == torch.float32 for value in hf_state.values())
    in_proj = state["visual.transformer.resblocks.2.attn.in_proj_weight"].float()
    torch.testing.assert_close(hf_state["vision_model.encoder.layers.2.self_attn.k_proj.weight"], in_proj[64:128])
    torch.testing.assert_close(hf_state["visual_projection.weight"], state["visual.proj"].float().T)


def test_hf_vision_folder_loads_and_matches(tmp_path):
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, projection_dim=40, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8, hidden_act="quick_gelu",
                              layer_norm_eps=1e-5)
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(config).eval()
    model.save_pretrained(tmp_path / "hf_vision")
    encoder = load_clip_vision(tmp_path / "hf_vision")
    assert (encoder.image_size, encoder.feature_dim) == (32, 40) and not encoder.training
    pixels = normalised_pixels(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixels), model(pixel_values=pixels).image_embeds, rtol=1e-6, atol=1e-6)


def test_hf_full_clip_folder_loads_the_vision_tower(tmp_path):
    vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 16, "hidden_act": "quick_gelu"}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 100, "max_position_embeddings": 16}
    torch.manual_seed(1)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)).eval()
    model.save_pretrained(tmp_path / "hf_clip")
    encoder = load_clip_vision(tmp_path / "hf_clip")
    pixels = normalised_pixels(2, 32)
    with torch.no_grad():
        reference = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        torch.testing.assert_close(encoder(pixels), reference, rtol=1e-6, atol=1e-6)


def test_hf_folders_with_missing_or_mismatched_weights_are_rejected(tmp_path):
    tiny = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
            "image_size": 32, "patch_size": 16}
    CLIPVisionModel(CLIPVisionConfig(**tiny)).save_pretrained(tmp_path / "no_projection")
    with pytest.raises(AdplgError, match=r"no_projection.*missing key visual_projection\.weight"):
        load_clip_vision(tmp_path / "no_projection")
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**tiny, projection_dim=40)).save_pretrained(tmp_path / "edited")
    config_file = tmp_path / "edited" / "config.json"
    config_file.write_text(config_file.read_text().replace('"projection_dim": 40', '"projection_dim": 30'))
    with pytest.raises(AdplgError, match=r"edited.*visual_projection\.weight of shape \(30, 64\), got \(40, 64\)"):
        load_clip_vision(tmp_path / "edited")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdplgError, match="empty.*config.json not found"):
        load_clip_vision(tmp_path / "empty")


def test_clip_wrong_inputs_are_clear_errors(tmp_path, i3d_file):
    with pytest.raises(AdplgError, match="missing.pt: not found"):
        load_clip_vision(tmp_path / "missing.pt")
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    with pytest.raises(AdplgError, match="readme.txt.*expected an OpenAI CLIP ViT checkpoint"):
        load_clip_vision(text)
    with pytest.raises(AdplgError, match="rgb_imagenet.pt: holds I3D weights .*not CLIP"):
        load_clip_vision(i3d_file)
    state = random_clip_state(seed=8, layers=2, image_size=64)
    state["visual.transformer.resblocks.1.mlp.c_proj.weight"] = torch.zeros(64, 100)
    del state["visual.ln_post.bias"]
    torch.save(state, tmp_path / "bad_clip.pt")
    with pytest.raises(AdplgError) as info:
        load_clip_vision(tmp_path / "bad_clip.pt")
    message = str(info.value)
    assert "bad_clip.pt" in message and "2 problems" in message
    assert "vision_model.encoder.layers.1.mlp.fc2.weight of shape (64, 256), got (64, 100)" in message
    assert "missing key vision_model.post_layernorm.bias" in message


@pytest.mark.parametrize("form", ["state_dict", "torchscript", "hf_folder"])
def test_clip_weights_given_to_i3d_are_a_clear_error(tmp_path, form):
    """Issue 9: CLIP weights for an I3D checkpoint name the mix-up, not PyTorch's weights_only message."""
    if form == "hf_folder":
        path = tmp_path / "clip-vit-b-16"
        path.mkdir()
        (path / "config.json").write_text("{}")
    else:
        path = write_random_clip(tmp_path / "ViT-B-16.pt", seed=3, layers=1, jit=form == "torchscript")
    with pytest.raises(AdplgError) as info:
        load_i3d(path)
    message = str(info.value)
    assert str(path) in message and "not I3D" in message and "rgb_imagenet.pt" in message
    assert "weights_only" not in message and "Unpickler" not in message


def test_clip_encoder_checks_pixel_shape(tmp_path):
    encoder = load_clip_vision(write_random_clip(tmp_path / "small.pt", layers=1, image_size=32))
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        encoder(torch.zeros(1, 3, 64, 64))
