"""The CLIP ViT image tower (e.g. ViT-B/16) giving OpenAI CLIP's ``encode_image`` embedding, the per-frame feature
of the VadCLIP feature sets.

The transformer itself is ``transformers.CLIPVisionModelWithProjection``; this module wraps it and loads weights
either from an OpenAI checkpoint (``ViT-B-16.pt``: a TorchScript archive, whose tensors are read without running its
code, or a plain state_dict, possibly fp16; the ``visual.*`` keys are mapped to the Hugging Face layout) or from a
local Hugging Face folder.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.utils import logging as hf_logging

from adplg.errors import AdplgError
from adplg.models.backbones.torchscript import read_torchscript_state
from adplg.models.backbones.weights import (
    backbone_of_state,
    is_torchscript_archive,
    raise_if_problems,
    read_torch_file,
    state_dict_problems,
    unwrap_state_dict,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_WHAT = "CLIP weights"
_EXPECTED = ("an OpenAI CLIP ViT checkpoint (TorchScript archive or state_dict with visual.* keys) "
             "or a Hugging Face folder with config.json and model.safetensors or pytorch_model.bin")
_OPENAI_HEAD_DIM = 64


class CLIPImageEncoder(nn.Module):
    """CLIP ViT image tower: normalised pixels [B, 3, S, S] -> image embedding [B, feature_dim].

    The embedding is ``visual_projection(post_layernorm(class token))``, i.e. OpenAI's ``encode_image``; it is NOT
    L2-normalised. Pixels are RGB in [0, 1], then normalised with :data:`CLIP_MEAN` / :data:`CLIP_STD`;
    ``S == image_size``.
    """

    def __init__(self, vision_model: CLIPVisionModelWithProjection):
        super().__init__()
        self.vision_model = vision_model
        # transformers types image_size for every vision config (int | list | tuple | None); CLIP's is an int
        self.image_size: int = int(vision_model.config.image_size)  # type: ignore[arg-type]
        self.feature_dim: int = int(vision_model.config.projection_dim)

    def forward(self, pixels: Tensor) -> Tensor:
        """[B, 3, image_size, image_size] normalised pixels -> [B, feature_dim]."""
        if pixels.dim() != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[2:]) != (self.image_size,) * 2:
            raise ValueError(f"CLIP expects pixels of shape [B, 3, {self.image_size}, {self.image_size}], "
                             f"got {tuple(pixels.shape)}")
        return self.vision_model(pixel_values=pixels).image_embeds


def _vision_config(width: int, layers: int, patch: int, image_size: int, output_dim: int,
                   mlp_dim: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=mlp_dim,
        projection_dim=output_dim,
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // _OPENAI_HEAD_DIM),
        num_channels=3,
        image_size=image_size,
        patch_size=patch,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


# OpenAI names (after "visual.") -> Hugging Face names, for one-to-one tensors.
_TOP_LEVEL_MAP = {
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "class_embedding": "vision_model.embeddings.class_embedding",
    "positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight",
    "ln_post.bias": "vision_model.post_layernorm.bias",
}
# Inside visual.transformer.resblocks.{i}. -> inside vision_model.encoder.layers.{i}.
_BLOCK_MAP = {
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_BLOCK_KEY = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")


def openai_to_hf_vision(
    state: Mapping[str, Tensor], source: str = "OpenAI CLIP state_dict"
) -> tuple[CLIPVisionConfig, dict[str, Tensor]]:
    """Map the ``visual.*`` tensors of an OpenAI CLIP ViT state_dict to a ``CLIPVisionModelWithProjection``
    config and state_dict (float32). Text-tower keys are ignored.

    The architecture is inferred from shapes: width and patch size from ``visual.conv1.weight``
    [width, 3, patch, patch], image size from ``visual.positional_embedding`` [(image/patch)^2 + 1, width], the
    number of layers from the ``resblocks`` indices, the MLP size from ``c_fc``, the output size from
    ``visual.proj`` [width, output_dim]; heads = width // 64 as in OpenAI's ``build_model``.

    ``attn.in_proj_*`` (q; k; v stacked on dim 0) is split into ``q_proj``/``k_proj``/``v_proj``;
    ``visual.proj`` is transposed into ``visual_projection.weight``. ``visual.*`` keys not in the OpenAI ViT layout
    are passed through unchanged so that a strict check reports them. ``source`` names the input in errors.
    """
    visual = {key[len("visual."):]: value.float() if value.is_floating_point() else value
              for key, value in state.items() if key.startswith("visual.")}
    if not visual:
        raise AdplgError(f"{source}: expected {_EXPECTED}; found no visual.* keys")
    shape_rules = {
        "conv1.weight": (4, "[width, 3, patch, patch]"),
        "positional_embedding": (2, "[(image_size / patch)^2 + 1, width]"),
        "proj": (2, "[width, output_dim]"),
    }
    problems = [f"missing key visual.{key} {rule}" if key not in visual
                else f"expected key visual.{key} of shape {rule}, got {tuple(visual[key].shape)}"
                for key, (ndim, rule) in shape_rules.items()
                if key not in visual or visual[key].dim() != ndim]
    block_indices = {int(m.group(1)) for key in visual if (m := _BLOCK_KEY.fullmatch(key))}
    mlp_key = "transformer.resblocks.0.mlp.c_fc.weight"
    if mlp_key not in visual:
        problems.append(f"missing key visual.{mlp_key} [4 * width, width]")
    if problems:
        raise AdplgError(f"{source}: not an OpenAI CLIP ViT image tower: " + "; ".join(problems))

    width, _, patch, _ = visual["conv1.weight"].shape
    grid = math.isqrt(visual["positional_embedding"].shape[0] - 1)
    if grid * grid + 1 != visual["positional_embedding"].shape[0]:
        raise AdplgError(f"{source}: expected key visual.positional_embedding of shape "
                         f"[(image_size / patch)^2 + 1, width], got {tuple(visual['positional_embedding'].shape)}")
    config = _vision_config(width=int(width), layers=max(block_indices) + 1, patch=int(patch),
                            image_size=grid * int(patch), output_dim=int(visual["proj"].shape[1]),
                            mlp_dim=int(visual[mlp_key].shape[0]))

    hf_state: dict[str, Tensor] = {}
    for key, value in visual.items():
        block = _BLOCK_KEY.fullmatch(key)
        if key in _TOP_LEVEL_MAP:
            hf_state[_TOP_LEVEL_MAP[key]] = value
        elif key == "proj":
            hf_state["visual_projection.weight"] = value.t().contiguous()
        elif block and block.group(2) in _BLOCK_MAP:
            hf_state[f"vision_model.encoder.layers.{block.group(1)}.{_BLOCK_MAP[block.group(2)]}"] = value
        elif block and block.group(2) in ("attn.in_proj_weight", "attn.in_proj_bias") and value.shape[0] % 3 == 0:
            kind = "weight" if block.group(2).endswith("weight") else "bias"
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                hf_state[f"vision_model.encoder.layers.{block.group(1)}.self_attn.{name}.{kind}"] = part.contiguous()
        else:
            hf_state[f"visual.{key}"] = value
    return config, hf_state


def _load_openai_file(path: Path) -> CLIPImageEncoder:
    if is_torchscript_archive(path):
        state = read_torchscript_state(path, _WHAT)   # never torch.jit.load: it runs the archive's code
    else:
        state = read_torch_file(path, _WHAT, expected=_EXPECTED)
    state = unwrap_state_dict(state, path, _WHAT)
    if backbone_of_state(state) == "i3d":
        raise AdplgError(f"{_WHAT} file {path}: holds I3D weights (Mixed_* keys), not CLIP: the CLIP backbone (512-d "
                         f"features, for checkpoints trained on CLIP features) needs {_EXPECTED}")
    config, hf_state = openai_to_hf_vision(state, source=f"{_WHAT} file {path}")
    encoder = CLIPImageEncoder(CLIPVisionModelWithProjection(config))
    raise_if_problems(state_dict_problems(encoder.vision_model.state_dict(), hf_state), path, _WHAT)
    encoder.vision_model.load_state_dict(hf_state, strict=True)
    return encoder


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar; the loader checks the loading info itself."""
    verbosity = hf_logging.get_verbosity()
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress_bar:
            hf_logging.enable_progress_bar()


def _mismatch_message(entry: object) -> str:
    if isinstance(entry, tuple) and len(entry) == 3:
        key, stored, expected = entry
        return f"expected key {key} of shape {tuple(expected)}, got {tuple(stored)}"
    return f"shape mismatch: {entry}"


def _load_hf_folder(folder: Path) -> CLIPImageEncoder:
    if not (folder / "config.json").is_file():
        raise AdplgError(f"{_WHAT} folder {folder}: expected {_EXPECTED}; config.json not found")
    try:
        is_full_clip = json.loads((folder / "config.json").read_text()).get("model_type") == "clip"
        with _quiet_transformers():
            if is_full_clip:
                full_config = CLIPConfig.from_pretrained(folder, local_files_only=True)
                config = full_config.vision_config
                # typed as CLIPConfig's constructor argument (dict | None); CLIPConfig makes it a CLIPVisionConfig
                assert isinstance(config, CLIPVisionConfig)
                if full_config.projection_dim is None:
                    raise AdplgError(f"{_WHAT} folder {folder}: config.json: projection_dim: expected an integer "
                                     f"(the image embedding size), got null")
                # CLIPModel's visual_projection uses the top-level projection_dim, not the vision_config's.
                config.projection_dim = full_config.projection_dim
            else:
                config = CLIPVisionConfig.from_pretrained(folder, local_files_only=True)
            # Mismatched sizes are collected in the loading info and reported below, all at once.
            loaded = CLIPVisionModelWithProjection.from_pretrained(
                folder, config=config, local_files_only=True, dtype=torch.float32, output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
            # output_loading_info=True returns (model, info): transformers' annotation knows only the model
            model, info = cast(tuple[CLIPVisionModelWithProjection, dict[str, Any]], loaded)
    except (OSError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        raise AdplgError(f"{_WHAT} folder {folder}: cannot be loaded as a Hugging Face CLIP model ({exc}); "
                         f"expected {_EXPECTED}") from exc
    problems = [f"missing key {key} (left randomly initialised)" for key in sorted(info.get("missing_keys", []))]
    problems += [_mismatch_message(entry) for entry in info.get("mismatched_keys", [])]
    # A full CLIPModel checkpoint also holds the text tower, which is expected to be left out.
    problems += [f"unexpected key {key}" for key in sorted(info.get("unexpected_keys", []))
                 if key.startswith(("vision_model.", "visual_projection."))]
    raise_if_problems(problems, folder, _WHAT)
    return CLIPImageEncoder(model)


def load_clip_vision(path: str | Path) -> CLIPImageEncoder:
    """Load a CLIP ViT image tower, in eval mode, on CPU, in float32, from ``path``: either an OpenAI checkpoint
    file (``ViT-B-16.pt``: TorchScript archive, read without running its code, or plain state_dict, fp16 or fp32)
    or a local Hugging Face folder (``config.json`` with a CLIPVisionConfig or a full CLIPConfig, plus
    ``model.safetensors`` or ``pytorch_model.bin``; never downloads). Problems raise one :class:`AdplgError`
    naming the path."""
    path = Path(path)
    if path.is_dir():
        encoder = _load_hf_folder(path)
    elif path.is_file():
        encoder = _load_openai_file(path)
    else:
        raise AdplgError(f"{_WHAT} path {path}: not found; expected {_EXPECTED}")
    return encoder.float().eval()
