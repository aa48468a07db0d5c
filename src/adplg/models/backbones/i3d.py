"""Inception-v1 I3D (RGB stream), the network whose pooled 1024-d ``Mixed_5c`` features the UCF-Crime,
XD-Violence and ShanghaiTech I3D feature sets are made of.

Module names, parameter names and shapes follow the public pytorch-i3d checkpoint layout (``rgb_imagenet.pt``:
a plain state_dict with top-level keys such as ``Conv3d_1a_7x7.conv3d.weight`` or ``Mixed_5c.b3b.bn.running_var``),
so that checkpoint loads by key with ``strict=True``. Convolutions and max pools use TensorFlow "SAME" padding,
computed from the input size at run time.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adplg.errors import AdplgError
from adplg.models.backbones.weights import (
    backbone_of_state,
    is_torchscript_archive,
    raise_if_problems,
    read_torch_file,
    state_dict_problems,
    unwrap_state_dict,
)

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
FEATURE_DIM = 1024
KINETICS_CLASSES = 400

Triple = tuple[int, int, int]


def _triple(value: int | tuple[int, ...]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    if len(value) != 3:
        raise ValueError(f"expected an int or 3 ints, got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


def same_padding(in_size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding along one dimension: ``(front, back)`` so that the output has
    ``ceil(in_size / stride)`` elements; the odd element, if any, goes at the back."""
    out_size = math.ceil(in_size / stride)
    total = max((out_size - 1) * stride + kernel - in_size, 0)
    front = total // 2
    return front, total - front


def pad_same_3d(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    """Zero-pad ``x`` [B, C, T, H, W] for a "SAME" 3-D window of size ``kernel`` and step ``stride``."""
    pads: list[int] = []
    # F.pad takes (W_front, W_back, H_front, H_back, T_front, T_back): last dimension first.
    for in_size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        pads.extend(same_padding(int(in_size), k, s))
    if not any(pads):
        return x
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d with "SAME" padding, then optionally BatchNorm3d and ReLU.

    Parameters are named ``conv3d.*`` and ``bn.*`` as in the public checkpoint.
    Input [B, in_channels, T, H, W] -> output [B, out_channels, ceil(T/st), ceil(H/sh), ceil(W/sw)].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 1,
        stride: int | tuple[int, int, int] = 1,
        use_batch_norm: bool = True,
        use_relu: bool = True,
        use_bias: bool = False,
    ):
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.use_relu = use_relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel_size, stride=self.stride, padding=0,
                                bias=use_bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM) if use_batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C_in, T, H, W]`` -> ``[B, C_out, T', H', W']`` ("SAME" padding: ``ceil(size / stride)``)."""
        x = self.conv3d(pad_same_3d(x, self.kernel_size, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.use_relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with "SAME" padding. Pads with zeros, not -inf, like the reference; this only equals true
    "SAME" max pooling because the inputs are post-ReLU (non-negative). No parameters.

    Input [B, C, T, H, W] -> output [B, C, ceil(T/st), ceil(H/sh), ceil(W/sw)].
    """

    def __init__(self, kernel_size: int | tuple[int, int, int], stride: int | tuple[int, int, int]):
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C, T, H, W]`` -> ``[B, C, ceil(T/st), ceil(H/sh), ceil(W/sw)]``."""
        return F.max_pool3d(pad_same_3d(x, self.kernel_size, self.stride), self.kernel_size, self.stride)


class InceptionModule(nn.Module):
    """Inception block with four parallel branches, concatenated on channels.

    ``channels = (c0, c1, c2, c3, c4, c5)``: ``b0`` 1x1 -> c0; ``b1a`` 1x1 -> c1, ``b1b`` 3x3x3 -> c2;
    ``b2a`` 1x1 -> c3, ``b2b`` 3x3x3 -> c4; ``b3a`` 3x3x3 max pool (stride 1), ``b3b`` 1x1 -> c5.
    Input [B, in_channels, T, H, W] -> output [B, c0 + c2 + c4 + c5, T, H, W].
    """

    def __init__(self, in_channels: int, channels: tuple[int, int, int, int, int, int]):
        super().__init__()
        c0, c1, c2, c3, c4, c5 = channels
        self.out_channels = c0 + c2 + c4 + c5
        self.b0 = Unit3D(in_channels, c0, kernel_size=1)
        self.b1a = Unit3D(in_channels, c1, kernel_size=1)
        self.b1b = Unit3D(c1, c2, kernel_size=3)
        self.b2a = Unit3D(in_channels, c3, kernel_size=1)
        self.b2b = Unit3D(c3, c4, kernel_size=3)
        self.b3a = MaxPool3dSame(kernel_size=3, stride=1)
        self.b3b = Unit3D(in_channels, c5, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, in_channels, T, H, W]`` -> ``[B, out_channels, T, H, W]``."""
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1
        )


# (in_channels, (c0, c1, c2, c3, c4, c5)) of every Inception block.
INCEPTION_SPECS: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _feature_layers() -> list[tuple[str, nn.Module]]:
    """The layers from the RGB input up to ``Mixed_5c``, in order, under their checkpoint names."""
    mixed = {name: InceptionModule(in_ch, channels) for name, (in_ch, channels) in INCEPTION_SPECS.items()}
    return [
        ("Conv3d_1a_7x7", Unit3D(3, 64, kernel_size=7, stride=2)),
        ("MaxPool3d_2a_3x3", MaxPool3dSame(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
        ("Conv3d_2b_1x1", Unit3D(64, 64, kernel_size=1)),
        ("Conv3d_2c_3x3", Unit3D(64, 192, kernel_size=3)),
        ("MaxPool3d_3a_3x3", MaxPool3dSame(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
        ("Mixed_3b", mixed["Mixed_3b"]),
        ("Mixed_3c", mixed["Mixed_3c"]),
        ("MaxPool3d_4a_3x3", MaxPool3dSame(kernel_size=3, stride=2)),
        ("Mixed_4b", mixed["Mixed_4b"]),
        ("Mixed_4c", mixed["Mixed_4c"]),
        ("Mixed_4d", mixed["Mixed_4d"]),
        ("Mixed_4e", mixed["Mixed_4e"]),
        ("Mixed_4f", mixed["Mixed_4f"]),
        ("MaxPool3d_5a_2x2", MaxPool3dSame(kernel_size=2, stride=2)),
        ("Mixed_5b", mixed["Mixed_5b"]),
        ("Mixed_5c", mixed["Mixed_5c"]),
    ]


class InceptionI3d(nn.Module):
    """Inception-v1 I3D, RGB stream.

    Layers are registered directly on this module under the public checkpoint's names (``Conv3d_1a_7x7``, ...,
    ``Mixed_5c``, ``logits``), so its state_dict keys carry no prefix.

    Input: RGB clips [B, 3, T, H, W], float, scaled to [-1, 1]. The standard snippet is 16 x 224 x 224, for which
    the ``Mixed_5c`` map is [B, 1024, 2, 7, 7].
    """

    def __init__(self, num_classes: int = KINETICS_CLASSES):
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = FEATURE_DIM
        self.layer_names: list[str] = []
        for name, layer in _feature_layers():
            self.add_module(name, layer)
            self.layer_names.append(name)
        self.logits = Unit3D(FEATURE_DIM, num_classes, kernel_size=1, use_batch_norm=False, use_relu=False,
                             use_bias=True)

    def feature_map(self, x: Tensor) -> Tensor:
        """[B, 3, T, H, W] -> the ``Mixed_5c`` output [B, 1024, T', H', W'] (T' = ceil(T/8), H' = ceil(H/32))."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects RGB clips of shape [B, 3, T, H, W], got {tuple(x.shape)}")
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x

    def features(self, x: Tensor) -> Tensor:
        """[B, 3, T, H, W] -> [B, 1024]: the ``Mixed_5c`` map averaged over its time and space.

        For 16 x 224 x 224 clips this equals the reference's ``AvgPool3d((2, 7, 7))`` feature.
        """
        return self.feature_map(x).mean(dim=(2, 3, 4))

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, T, H, W] -> Kinetics class logits [B, num_classes] (from the pooled features; no dropout)."""
        pooled = self.features(x)[:, :, None, None, None]
        return self.logits(pooled).flatten(1)


def load_i3d(path: str | Path) -> InceptionI3d:
    """Load I3D weights in the public pytorch-i3d layout (e.g. ``rgb_imagenet.pt``) into an
    :class:`InceptionI3d` in eval mode on CPU. The number of classes comes from ``logits.conv3d.weight``.

    Every key problem (missing, unexpected, wrong shape) is reported at once in one :class:`AdplgError`.
    """
    path = Path(path)
    what = "I3D weights"
    expected = "pytorch-i3d weights such as rgb_imagenet.pt (a torch.save state_dict)"
    not_i3d = ("a folder (a Hugging Face CLIP folder?)" if path.is_dir() else
               "a TorchScript archive (OpenAI's CLIP ViT-B-16.pt?)" if path.is_file() and is_torchscript_archive(path)
               else None)
    if not_i3d:
        raise AdplgError(f"{what} file {path}: {not_i3d}, not I3D weights: the I3D backbone (1024-d features, for "
                         f"checkpoints trained on I3D features) needs {expected}")
    state = unwrap_state_dict(read_torch_file(path, what, expected), path, what)
    if backbone_of_state(state) == "clip":
        raise AdplgError(f"{what} file {path}: holds CLIP ViT weights (visual.* keys), not I3D: the I3D backbone "
                         f"(1024-d features, for checkpoints trained on I3D features) needs {expected}")
    logits_weight = state.get("logits.conv3d.weight")
    if logits_weight is None or logits_weight.dim() != 5:
        got = "no such key" if logits_weight is None else f"shape {tuple(logits_weight.shape)}"
        raise AdplgError(f"{what} file {path}: expected key logits.conv3d.weight of shape "
                         f"(num_classes, {FEATURE_DIM}, 1, 1, 1), got {got}")
    model = InceptionI3d(num_classes=int(logits_weight.shape[0]))
    # Checkpoints saved before PyTorch 0.4 have no BN step counters; they do not affect eval-mode outputs.
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked"):
            state.setdefault(key, value)
    raise_if_problems(state_dict_problems(model.state_dict(), state), path, what)
    model.load_state_dict(state, strict=True)
    return model.eval()
