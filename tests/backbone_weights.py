"""Random weight files in the public backbone checkpoint layouts, for tests.

The layouts are written out here from the published key lists (pytorch-i3d ``rgb_imagenet.pt``; OpenAI CLIP
``ViT-B-16.pt``), independently of ``adplg.models.backbones``, so tests against them catch a wrong key mapping.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

# (name, in_channels, out_channels, kernel) of every BN-conv unit of I3D, in the pytorch-i3d naming.
_I3D_STEM = [("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
_I3D_MIXED = {
    "Mixed_3b": (192, 64, 96, 128, 16, 32, 32),
    "Mixed_3c": (256, 128, 128, 192, 32, 96, 64),
    "Mixed_4b": (480, 192, 96, 208, 16, 48, 64),
    "Mixed_4c": (512, 160, 112, 224, 24, 64, 64),
    "Mixed_4d": (512, 128, 128, 256, 24, 64, 64),
    "Mixed_4e": (512, 112, 144, 288, 32, 64, 64),
    "Mixed_4f": (528, 256, 160, 320, 32, 128, 128),
    "Mixed_5b": (832, 256, 160, 320, 32, 128, 128),
    "Mixed_5c": (832, 384, 192, 384, 48, 128, 128),
}


def i3d_units() -> list[tuple[str, int, int, int]]:
    """(unit name, in_channels, out_channels, cubic kernel size) of every conv + BN unit, in layer order."""
    units = list(_I3D_STEM)
    for block, (cin, c0, c1, c2, c3, c4, c5) in _I3D_MIXED.items():
        units += [(f"{block}.b0", cin, c0, 1), (f"{block}.b1a", cin, c1, 1), (f"{block}.b1b", c1, c2, 3),
                  (f"{block}.b2a", cin, c3, 1), (f"{block}.b2b", c3, c4, 3), (f"{block}.b3b", cin, c5, 1)]
    return units


def random_i3d_state(seed: int = 0, num_classes: int = 400) -> dict[str, Tensor]:
    """A random state_dict in the pytorch-i3d layout. Conv weights are He-scaled and BN statistics are
    non-trivial, so activations stay in a sensible range through the whole network."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    for name, cin, cout, k in i3d_units():
        fan_in = cin * k ** 3
        state[f"{name}.conv3d.weight"] = torch.randn(cout, cin, k, k, k, generator=gen) * (2.0 / fan_in) ** 0.5
        state[f"{name}.bn.weight"] = 1.0 + 0.1 * torch.randn(cout, generator=gen)
        state[f"{name}.bn.bias"] = 0.1 * torch.randn(cout, generator=gen)
        state[f"{name}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=gen)
        state[f"{name}.bn.running_var"] = 0.5 + torch.rand(cout, generator=gen)
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(1000, dtype=torch.long)
    state["logits.conv3d.weight"] = torch.randn(num_classes, 1024, 1, 1, 1, generator=gen) / 32.0
    state["logits.conv3d.bias"] = 0.01 * torch.randn(num_classes, generator=gen)
    return state


def write_random_i3d(path: Path, seed: int = 0, num_classes: int = 400) -> Path:
    """Save :func:`random_i3d_state` with ``torch.save`` as a plain state_dict at ``path``; return ``path``."""
    path = Path(path)
    torch.save(random_i3d_state(seed, num_classes), path)
    return path


def random_clip_state(seed: int = 0, width: int = 64, layers: int = 2, patch: int = 16, image_size: int = 224,
                      output_dim: int = 512, fp16: bool = True) -> dict[str, Tensor]:
    """A random state_dict in the OpenAI CLIP layout: the ViT ``visual.*`` tower plus two text-tower keys."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float) -> Tensor:
        return torch.randn(*shape, generator=gen) * scale

    def layer_norm(prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}.weight": 1.0 + rand(width, scale=0.1), f"{prefix}.bias": rand(width, scale=0.1)}

    tokens = (image_size // patch) ** 2 + 1
    state: dict[str, Tensor] = {
        "visual.conv1.weight": rand(width, 3, patch, patch, scale=(3 * patch * patch) ** -0.5),
        "visual.class_embedding": rand(width, scale=width ** -0.5),
        "visual.positional_embedding": rand(tokens, width, scale=0.02 * width ** 0.5),
        **layer_norm("visual.ln_pre"),
    }
    for i in range(layers):
        block = f"visual.transformer.resblocks.{i}"
        state.update(layer_norm(f"{block}.ln_1"))
        state[f"{block}.attn.in_proj_weight"] = rand(3 * width, width, scale=width ** -0.5)
        state[f"{block}.attn.in_proj_bias"] = rand(3 * width, scale=0.02)
        state[f"{block}.attn.out_proj.weight"] = rand(width, width, scale=width ** -0.5)
        state[f"{block}.attn.out_proj.bias"] = rand(width, scale=0.02)
        state.update(layer_norm(f"{block}.ln_2"))
        state[f"{block}.mlp.c_fc.weight"] = rand(4 * width, width, scale=width ** -0.5)
        state[f"{block}.mlp.c_fc.bias"] = rand(4 * width, scale=0.02)
        state[f"{block}.mlp.c_proj.weight"] = rand(width, 4 * width, scale=(4 * width) ** -0.5)
        state[f"{block}.mlp.c_proj.bias"] = rand(width, scale=0.02)
    state.update(layer_norm("visual.ln_post"))
    state["visual.proj"] = rand(width, output_dim, scale=width ** -0.5)
    state["token_embedding.weight"] = rand(16, width, scale=0.02)
    state["logit_scale"] = torch.tensor(4.6052)
    if fp16:
        state = {key: value.half() for key, value in state.items()}
    return state


def _module_tree(state: dict[str, Tensor]) -> nn.Module:
    """Plain nested modules whose parameter names are exactly the keys of ``state``."""
    root = nn.Module()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    return root


def write_random_clip(path: Path, seed: int = 0, width: int = 64, layers: int = 2, patch: int = 16,
                      image_size: int = 224, output_dim: int = 512, fp16: bool = True, jit: bool = False) -> Path:
    """Save :func:`random_clip_state` at ``path`` as a plain state_dict (``torch.save``) or, with ``jit=True``,
    as a TorchScript archive (like the released ``ViT-B-16.pt``) whose ``.state_dict()`` has the same keys."""
    path = Path(path)
    state = random_clip_state(seed, width, layers, patch, image_size, output_dim, fp16)
    if jit:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.script(_module_tree(state)).save(str(path))
    else:
        torch.save(state, path)
    return path
