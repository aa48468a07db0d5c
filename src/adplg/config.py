"""The one typed configuration of adplg: YAML presets per dataset and feature type, dotted overrides.

A run's config is ``preset YAML -> optional user YAML -> dotted overrides (``train.seed=1``)``, validated by pydantic:
unknown keys and wrong types are errors that name the key. The resolved config is saved with every run and checkpoint.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adplg.conventions import SNIPPET_FRAMES
from adplg.errors import AdplgError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LayoutConfig(_Strict):
    """How snippets map to frames: ``uniform`` (16 frames per snippet) or ``spread`` (the R1 layout)."""

    kind: Literal["uniform", "spread"] = "uniform"
    frames_per_snippet: int = Field(SNIPPET_FRAMES, ge=1)
    window: int = Field(54, ge=1)


class DataConfig(_Strict):
    """Where the features, lists and ground truth are, and their shape.

    List paths are relative to ``list_dir``; feature paths inside the lists are re-rooted onto ``train_root`` /
    ``test_root`` (default ``feature_root``) after stripping their common prefix.
    """

    format: Literal["ucf", "xd", "sht", "csv", "folder"] = "ucf"
    list_dir: str = "list"
    train_list: str = "UCF_Train.list"
    test_list: str = "UCF_Test.list"
    feature_root: str | None = None
    train_root: str | None = None
    test_root: str | None = None
    annotations: str | None = "UCF_Annotation.txt"
    annotation_format: Literal["ucf", "xd"] = "ucf"
    gt_file: str | None = None
    feature_dim: int = Field(1024, ge=1)
    train_crops: int | None = Field(10, ge=1)
    test_crops: int | None = Field(10, ge=1)
    num_segments: int = Field(64, ge=1)
    resample: Literal["mean", "pad"] = "mean"
    layout: LayoutConfig = LayoutConfig()
    mmap: bool = False

    def resolve(self, name: str | None) -> Path | None:
        """A list/annotation/GT path: absolute as given, else relative to ``list_dir``."""
        if name is None:
            return None
        path = Path(name).expanduser()
        return path if path.is_absolute() else Path(self.list_dir).expanduser() / path

    @property
    def train_features(self) -> str | None:
        return self.train_root or self.feature_root

    @property
    def test_features(self) -> str | None:
        return self.test_root or self.feature_root


class ModelConfig(_Strict):
    """Both branches' sizes. The defaults are the official architecture (METHOD.md section 2)."""

    model_dim: int = 1024
    input_adapter: Literal["linear", "zero_pad"] = "linear"
    input_standardize: bool = False  # improvement option: standardise features with training-set statistics
    attn_dim: int = 512
    video_hidden_dim: int = 32
    video_dropout: float = 0.7
    windows: tuple[int, ...] = (2, 4, 6, 8)
    local_heads: int = 8
    local_dim_head: int = 64
    local_out_dim: int = 256
    max_len: int = 6750
    global_depth: int = 2
    global_heads: int = 4
    global_dim_head: int = 256
    mlp_dim: int = 1024
    dropout: float = 0.5
    hidden_dim: int = 32
    cls_dropout: float = 0.7
    attention: Literal["blocked", "dense"] = "blocked"

    @model_validator(mode="after")
    def _check_concat(self) -> "ModelConfig":
        if self.local_out_dim * len(self.windows) != self.model_dim:
            raise ValueError(
                f"local_out_dim * len(windows) must equal model_dim: {self.local_out_dim} * {len(self.windows)} "
                f"!= {self.model_dim}"
            )
        return self


class PLGConfig(_Strict):
    """Pseudo-label generation (METHOD.md section 2.5). Official flag names in brackets."""

    mean_threshold: float = Field(0.25, ge=0.0, le=1.0)  # [--thre_pesudo_a]
    var_threshold: float = Field(0.4, ge=0.0, le=1.0)  # [--thre_var_a]
    history: int = Field(3, ge=2)  # [--pl_his_num]; >= 2 because the variance is unbiased
    key: Literal["auto", "video", "crop"] = "auto"  # auto = the official key of the dataset format


class LossConfig(_Strict):
    video: float = 1.0
    triplet: float = 1.0
    cos: float = 1.0
    smooth: float = 1.0
    sparsity: float = 1.0
    snippet: float = 1.0
    smooth_axis: Literal["batch", "time"] = "batch"  # "batch" is the official (quirk 2); "time" is the fix
    sparsity_axis: Literal["batch", "time"] = "batch"  # likewise for the sparsity term
    snippet_nan_trick: bool = True  # official zero-loss -> NaN -> nanmean (quirk 4); False: mean over kept elements


class TrainConfig(_Strict):
    batch_size: int = Field(32, ge=1)  # per half: 32 normal + 32 abnormal crops
    num_iters: int = Field(20000, ge=1)
    warm_up: int = Field(1000, ge=0)
    lr_v: float = 1e-4
    lr_s: float = 1e-3
    weight_decay: float = 0.005
    optimizer: Literal["adam", "adamw"] = "adam"  # official: Adam with L2 decay (quirk 1)
    sch_step: int = 4000
    sch_gamma: float = 0.9
    eval_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    seed: int = 42
    device: str = "auto"
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0)  # >0: hold out train videos for test-free model selection
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)  # >0: evaluate and save an exponential moving average of net_s
    val_top_k: int = Field(16, ge=1)
    progress: bool = True
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"  # fp32 is the faithful math; tf32/bf16 are speed options
    compile: bool = False  # torch.compile both branches


class EvalConfig(_Strict):
    far_threshold: float = 0.5
    primary: Literal["auc", "pr_auc", "ap"] = "auc"
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    # crop-snippets per forward: equal-length videos are batched up to it, a long video's crops split beyond it
    # (lower it to bound memory: 16384 keeps the longest UCF video's 10 crops under 1.5 GiB on a CPU)
    batch_snippets: int = Field(65536, ge=1)
    smooth_window: int = Field(0, ge=0)  # improvement option: moving average of snippet scores (0 = off)


class Config(_Strict):
    name: str = "ucf-i3d"
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    plg: PLGConfig = PLGConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    output_dir: str = "runs"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- presets and overrides

def preset_names() -> list[str]:
    folder = resources.files("adplg") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    names = preset_names()
    if name not in names:
        raise AdplgError(f"unknown preset {name!r}; expected one of: {', '.join(names)}")
    text = (resources.files("adplg") / "presets" / f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``'train.seed=3'`` -> ``{'train': {'seed': 3}}``; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise AdplgError(f"override {text!r} must look like section.key=value (e.g. train.seed=1)")
    dotted, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    out: dict[str, Any] = {}
    node = out
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def build_config(preset: str | None = None, config_file: str | Path | None = None,
                 overrides: list[str] | tuple[str, ...] = (), base: dict[str, Any] | None = None) -> Config:
    """``base`` (e.g. a checkpoint's saved config) or a preset, then a user YAML file, then dotted overrides;
    validated, with errors naming the key."""
    raw: dict[str, Any] = dict(base or {})
    if preset:
        raw = _merge(raw, load_preset(preset))
    if config_file is not None:
        path = Path(config_file)
        try:
            raw = _merge(raw, yaml.safe_load(path.read_text()) or {})
        except FileNotFoundError:
            raise AdplgError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise AdplgError(f"config file {path} is not valid YAML: {exc}") from None
    for item in overrides:
        raw = _merge(raw, parse_override(item))
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            got = err.get("input")
            lines.append(f"{where}: {err['msg']} (got {got!r})" if not isinstance(got, dict) else f"{where}: {err['msg']}")
        source = f"preset {preset!r}" if preset else "config"
        raise AdplgError(f"invalid configuration ({source}):\n  " + "\n  ".join(lines)) from None


