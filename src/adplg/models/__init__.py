"""The two ADPLG-VAD branches, their building blocks and the converter from the official checkpoint layout."""

from adplg.models.convert import convert_official_state_dicts, is_official_state_dict, load_official_checkpoint
from adplg.models.local_attention import (
    LocalMultiHeadAttention,
    LocalWindowTransformer,
    RotaryEmbedding,
    band_attention_blocked,
    band_attention_dense,
)
from adplg.models.snippet_branch import (
    GlobalTransformer,
    SnippetBranch,
    TemporalConvEmbedding,
    is_causal,
    receptive_field,
)
from adplg.models.streaming import CausalStream
from adplg.models.video_branch import (
    VSSF,
    InputAdapter,
    ScoreHead,
    VideoBranch,
    VideoBranchOutput,
    minmax_normalise,
)

__all__ = [
    "VSSF",
    "CausalStream",
    "GlobalTransformer",
    "InputAdapter",
    "LocalMultiHeadAttention",
    "LocalWindowTransformer",
    "RotaryEmbedding",
    "ScoreHead",
    "SnippetBranch",
    "TemporalConvEmbedding",
    "VideoBranch",
    "VideoBranchOutput",
    "band_attention_blocked",
    "band_attention_dense",
    "convert_official_state_dicts",
    "is_causal",
    "is_official_state_dict",
    "load_official_checkpoint",
    "minmax_normalise",
    "receptive_field",
]
