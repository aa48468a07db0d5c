"""Convert state_dicts in the official ADPLG-VAD layout (``net_v`` = ``Video_Classifer``, ``net_s`` =
``Snippet_Classifer``; also the layout of the released ``ucf_model_{s,v}_*.pkl`` checkpoints) into the state_dicts
of our :class:`~adplg.models.video_branch.VideoBranch` and :class:`~adplg.models.snippet_branch.SnippetBranch`
(official defaults, ``in_dim = 1024``).

Handled details:

* ``vars_s.0..3`` are aliases of the ``classifier_s`` parameters; accepted (optional) and checked to be equal.
* Parameters the official forward pass never uses are dropped when present: ``LSA*.token_emb.weight``, the
  local blocks' feed-forward ``LSA*.layers.0.1.*`` and the top-level ``norm.*``.
* The rotary ``inv_freq`` buffers are loaded.
* The 1x1 ``Conv1d`` weights of VSSF (``[512, 1024, 1]``) become ``Linear`` weights (``[512, 1024]``).
* A ``module.`` prefix on every key (``nn.DataParallel``) is stripped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from adplg.errors import AdplgError
from adplg.models.backbones.weights import short_reason

_NUM_LOCAL = 4        # LSA1..LSA4
_GLOBAL_DEPTH = 2     # selfatt.layers.0..1
_DIM = 1024
_MAX_LEN = 6750

# official key -> (our key, expected official shape)
_NET_V_MAP: dict[str, tuple[str, tuple[int, ...]]] = {
    "classifier_v.0.weight": ("classifier.fc1.weight", (32, 512)),
    "classifier_v.0.bias": ("classifier.fc1.bias", (32,)),
    "classifier_v.3.weight": ("classifier.fc2.weight", (1, 32)),
    "classifier_v.3.bias": ("classifier.fc2.bias", (1,)),
}
for _off, _ours in (("q", "query"), ("k", "key"), ("v", "value")):
    _NET_V_MAP[f"Snippts_Fuse.{_off}.weight"] = (f"vssf.{_ours}.weight", (512, _DIM, 1))
    _NET_V_MAP[f"Snippts_Fuse.{_off}.bias"] = (f"vssf.{_ours}.bias", (512,))


def _net_s_map() -> dict[str, tuple[str, tuple[int, ...]]]:
    m: dict[str, tuple[str, tuple[int, ...]]] = {
        "embedding.conv_1.0.weight": ("embed.conv.weight", (_DIM, _DIM, 3)),
        "embedding.conv_1.0.bias": ("embed.conv.bias", (_DIM,)),
        "classifier_s.0.weight": ("classifier.fc1.weight", (32, _DIM)),
        "classifier_s.0.bias": ("classifier.fc1.bias", (32,)),
        "classifier_s.3.weight": ("classifier.fc2.weight", (1, 32)),
        "classifier_s.3.bias": ("classifier.fc2.bias", (1,)),
    }
    for n in range(1, _NUM_LOCAL + 1):
        off, ours = f"LSA{n}", f"local_blocks.{n - 1}"
        m.update({
            f"{off}.pos_emb.weight": (f"{ours}.pos_emb.weight", (_MAX_LEN, _DIM)),
            f"{off}.layers.0.0.norm.weight": (f"{ours}.attn.norm.weight", (_DIM,)),
            f"{off}.layers.0.0.norm.bias": (f"{ours}.attn.norm.bias", (_DIM,)),
            f"{off}.layers.0.0.to_qkv.weight": (f"{ours}.attn.to_qkv.weight", (3 * 512, _DIM)),
            f"{off}.layers.0.0.attn_fn.rel_pos.inv_freq": (f"{ours}.attn.rotary.inv_freq", (32,)),
            f"{off}.layers.0.0.to_out.weight": (f"{ours}.attn.to_out.weight", (_DIM, 512)),
            f"{off}.to_logits.0.weight": (f"{ours}.out_norm.weight", (_DIM,)),
            f"{off}.to_logits.0.bias": (f"{ours}.out_norm.bias", (_DIM,)),
            f"{off}.to_logits.1.weight": (f"{ours}.out_proj.weight", (256, _DIM)),
        })
    for layer in range(_GLOBAL_DEPTH):
        off, ours = f"selfatt.layers.{layer}", f"global_transformer.layers.{layer}"
        m.update({
            f"{off}.0.norm.weight": (f"{ours}.attn_norm.weight", (_DIM,)),
            f"{off}.0.norm.bias": (f"{ours}.attn_norm.bias", (_DIM,)),
            f"{off}.0.fn.to_qkv.weight": (f"{ours}.attn.to_qkv.weight", (3 * _DIM, _DIM)),
            f"{off}.0.fn.to_out.0.weight": (f"{ours}.attn.to_out.weight", (_DIM, _DIM)),
            f"{off}.0.fn.to_out.0.bias": (f"{ours}.attn.to_out.bias", (_DIM,)),
            f"{off}.1.norm.weight": (f"{ours}.ff_norm.weight", (_DIM,)),
            f"{off}.1.norm.bias": (f"{ours}.ff_norm.bias", (_DIM,)),
            f"{off}.1.fn.net.0.weight": (f"{ours}.ff.fc1.weight", (_DIM, _DIM)),
            f"{off}.1.fn.net.0.bias": (f"{ours}.ff.fc1.bias", (_DIM,)),
            f"{off}.1.fn.net.3.weight": (f"{ours}.ff.fc2.weight", (_DIM, _DIM)),
            f"{off}.1.fn.net.3.bias": (f"{ours}.ff.fc2.bias", (_DIM,)),
        })
    return m


_NET_S_MAP = _net_s_map()
_NET_S_ALIASES = {
    "vars_s.0": "classifier_s.0.weight",
    "vars_s.1": "classifier_s.0.bias",
    "vars_s.2": "classifier_s.3.weight",
    "vars_s.3": "classifier_s.3.bias",
}
# keys of parameters the official forward pass never uses: accepted and dropped
_NET_S_UNUSED = re.compile(r"^(LSA[1-4]\.token_emb\.weight|LSA[1-4]\.layers\.0\.1\..+|norm\.(weight|bias))$")


def _strip_module_prefix(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    keys = list(sd)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def _check_tensor(name: str, key: str, value, expected: tuple[int, ...]) -> Tensor:
    if not isinstance(value, Tensor):
        raise AdplgError(f"{name} state_dict: key {key!r} holds a {type(value).__name__}, not a tensor")
    if tuple(value.shape) != expected:
        raise AdplgError(f"{name} state_dict: key {key!r} has shape {list(value.shape)}, expected {list(expected)}")
    return value.detach()


def _convert(name: str, sd: Mapping[str, Tensor], table: dict[str, tuple[str, tuple[int, ...]]],
             aliases: Mapping[str, str], unused: re.Pattern | None) -> dict[str, Tensor]:
    if not isinstance(sd, Mapping):
        raise AdplgError(f"{name} state_dict must be a mapping of key -> tensor, got {type(sd).__name__}")
    sd = _strip_module_prefix(sd)
    unknown = [k for k in sd if k not in table and k not in aliases and not (unused and unused.match(k))]
    if unknown:
        raise AdplgError(f"{name} state_dict: unknown key(s) {unknown[:8]}{' ...' if len(unknown) > 8 else ''} "
                         f"(not in the official {name} layout)")
    missing = [k for k in table if k not in sd]
    if missing:
        raise AdplgError(f"{name} state_dict: missing key(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    out: dict[str, Tensor] = {}
    for off_key, (our_key, shape) in table.items():
        value = _check_tensor(name, off_key, sd[off_key], shape)
        if off_key.startswith("Snippts_Fuse.") and off_key.endswith(".weight"):
            value = value.squeeze(-1)  # Conv1d(k=1) weight -> Linear weight
        out[our_key] = value
    for alias, target in aliases.items():
        if alias in sd:
            value = _check_tensor(name, alias, sd[alias], table[target][1])
            if not torch.equal(value, sd[target].detach()):
                raise AdplgError(f"{name} state_dict: alias {alias!r} differs from {target!r}; the official module "
                                 f"registers them as the same parameter, so this checkpoint is inconsistent")
    return out


def convert_official_state_dicts(net_v: Mapping | None = None, net_s: Mapping | None = None
                                 ) -> tuple[dict | None, dict | None]:
    """Convert official ``net_v`` / ``net_s`` state_dicts into ``(VideoBranch, SnippetBranch)`` state_dicts.

    Either argument may be ``None`` (its result is then ``None``). Raises :class:`AdplgError` on an unknown or
    missing key, a wrong shape (naming the key, actual and expected shape) or disagreeing ``vars_s`` aliases.
    The results load with ``strict=True`` into modules built with the official defaults and ``in_dim=1024``.
    """
    v = None if net_v is None else _convert("net_v", net_v, _NET_V_MAP, {}, None)
    s = None if net_s is None else _convert("net_s", net_s, _NET_S_MAP, _NET_S_ALIASES, _NET_S_UNUSED)
    return v, s


def is_official_state_dict(sd: Mapping) -> Literal["net_v", "net_s", None]:
    """Which official network a state_dict belongs to: ``"net_v"``, ``"net_s"``, or ``None`` (neither / ours)."""
    if not isinstance(sd, Mapping):
        return None
    keys = set(_strip_module_prefix(sd))
    is_v = any(k.startswith(("Snippts_Fuse.", "classifier_v.")) for k in keys)
    is_s = any(k.startswith(("LSA1.", "selfatt.", "classifier_s.", "embedding.conv_1.")) for k in keys)
    if is_v == is_s:
        return None
    return "net_v" if is_v else "net_s"


def load_official_checkpoint(path) -> tuple[str, dict]:
    """Load an official ``.pkl`` (a saved ``state_dict`` of ``net_s`` or ``net_v``) and convert it.

    Returns ``("net_s" | "net_v", state_dict for SnippetBranch | VideoBranch)``. The file is read with
    ``torch.load(weights_only=True)`` (no arbitrary code runs). Raises :class:`AdplgError` when the file is
    missing, unreadable, or not an official state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise AdplgError(f"official checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    # arbitrary or truncated bytes make the unpickler fail with many different exception types
    except Exception as exc:  # noqa: BLE001
        raise AdplgError(f"cannot read {path} as a PyTorch state_dict ({short_reason(exc)}); expected the authors' "
                         f"*_model_s_*.pkl / *_model_v_*.pkl (a state_dict saved with torch.save)") from None
    if not isinstance(obj, Mapping):
        raise AdplgError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    kind = is_official_state_dict(obj)
    if kind is None:
        sample = list(obj)[:5]
        raise AdplgError(f"{path} is not an official ADPLG-VAD net_s/net_v state_dict (first keys: {sample})")
    try:
        v, s = convert_official_state_dicts(**{kind: obj})
    except AdplgError as exc:
        raise AdplgError(f"{path}: {exc} (is it a checkpoint of another model or feature size?)") from None
    state = s if kind == "net_s" else v
    assert state is not None  # the converted state_dict of the network that was given
    return kind, state
