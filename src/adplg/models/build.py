"""Config -> plain constructor arguments for both branches."""

from __future__ import annotations

from adplg.config import Config
from adplg.models.ensemble import SnippetEnsemble
from adplg.models.snippet_branch import SnippetBranch
from adplg.models.video_branch import VideoBranch


def build_video_branch(cfg: Config) -> VideoBranch:
    """Branch 1 (:class:`VideoBranch`) with the sizes of ``cfg.model`` and the feature size of ``cfg.data``."""
    m = cfg.model
    return VideoBranch(in_dim=cfg.data.feature_dim, model_dim=m.model_dim, attn_dim=m.attn_dim,
                       hidden_dim=m.video_hidden_dim, dropout=m.video_dropout, input_adapter=m.input_adapter,
                       input_standardize=m.input_standardize)


def build_snippet_branch(cfg: Config) -> SnippetBranch | SnippetEnsemble:
    """The scoring branch: one :class:`SnippetBranch`, or with ``model.snippet_members = K > 1`` an ensemble of K
    independently initialised ones (trained side by side, each on its own loss; they score as the mean)."""
    if cfg.model.snippet_members > 1:
        return SnippetEnsemble([_snippet_branch(cfg) for _ in range(cfg.model.snippet_members)])
    return _snippet_branch(cfg)


def _snippet_branch(cfg: Config) -> SnippetBranch:
    m = cfg.model
    return SnippetBranch(in_dim=cfg.data.feature_dim, model_dim=m.model_dim, windows=tuple(m.windows),
                         local_heads=m.local_heads, local_dim_head=m.local_dim_head, local_out_dim=m.local_out_dim,
                         max_len=m.max_len, global_depth=m.global_depth, global_heads=m.global_heads,
                         global_dim_head=m.global_dim_head, mlp_dim=m.mlp_dim, dropout=m.dropout,
                         hidden_dim=m.hidden_dim, cls_dropout=m.cls_dropout, input_adapter=m.input_adapter,
                         attention=m.attention, input_standardize=m.input_standardize, causal=m.causal,
                         causal_window=m.causal_window)
