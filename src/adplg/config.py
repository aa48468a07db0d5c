"""The one typed configuration of adplg: YAML presets per dataset and feature type, dotted overrides.

A run's config is ``preset YAML -> optional user YAML -> dotted overrides (``train.seed=1``)``, validated by pydantic:
unknown keys and wrong types are errors that name the key. The resolved config is saved with every run and checkpoint.
A preset file may build on another with ``base: <preset>`` (the base's settings, then its own keys merged over them;
see :func:`preset_lineage`): the improved presets are their faithful preset plus the keys they change.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic.fields import FieldInfo

from adplg.conventions import SNIPPET_FRAMES
from adplg.errors import AdplgError
from adplg.preset_files import load_preset, merge_settings


class _Strict(BaseModel):
    # every float is finite: nan / inf in a config are always a mistake (``train.lr_v=.nan``)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class LayoutConfig(_Strict):
    """How snippets map to frames: ``uniform`` (16 frames per snippet) or ``spread`` (the R1 layout)."""

    kind: Literal["uniform", "spread"] = Field(
        "uniform", description="snippet -> frame layout: uniform (consecutive snippets) or spread (the R1 layout)")
    frames_per_snippet: int = Field(SNIPPET_FRAMES, ge=1, description="frames covered by one snippet")
    window: int = Field(54, ge=1, description="spread layout: frames of the window each snippet is sampled from")


class DataConfig(_Strict):
    """Where the features, lists and ground truth are, and their shape.

    List paths are relative to ``list_dir``; feature paths inside the lists are re-rooted onto ``train_root`` /
    ``test_root`` (default ``feature_root``) after stripping their common prefix.
    """

    format: Literal["ucf", "xd", "sht", "csv", "folder"] = Field(
        "ucf", description="list file format: ucf, xd, sht (official lists), csv (VadCLIP), folder (<video>.npy + csv)")
    list_dir: str = Field("list", description="folder of the list, annotation and GT files (relative names)")
    train_list: str = Field("UCF_Train.list", description="training list file (relative to list_dir)")
    test_list: str = Field("UCF_Test.list", description="test list file (relative to list_dir)")
    feature_root: str | None = Field(None, description="feature folder of both lists (--feature_root)")
    train_root: str | None = Field(None, description="feature folder of the training list (default feature_root)")
    test_root: str | None = Field(None, description="feature folder of the test list (default feature_root)")
    annotations: str | None = Field("UCF_Annotation.txt", description="test anomaly intervals (relative to list_dir)")
    annotation_format: Literal["ucf", "xd"] = Field(
        "ucf", description="annotation file format: ucf (UCF_Annotation.txt) or xd (<video> s1 e1 [s2 e2 ...])")
    gt_file: str | None = Field(None, description="a frame-level GT .npy used instead of the annotations")
    feature_dim: int = Field(1024, ge=1, description="feature dimension D of the .npy files")
    train_crops: int | None = Field(10, ge=1, description="crops per training video (null: any number)")
    test_crops: int | None = Field(10, ge=1, description="crops per test video (null: any number)")
    num_segments: int = Field(64, ge=1, description="training crops are resampled to this many segments")
    resample: Literal["mean", "pad"] = Field(
        "mean", description="training resampling: mean (official I3D rule) or pad (VadCLIP: zero-pad short crops)")
    layout: LayoutConfig = LayoutConfig()
    mmap: bool = Field(False, description="memory-map the feature files instead of reading them into memory")
    fps: float | None = Field(None, gt=0, description="frames per second of the test frame GT (time to detect in "
                                                      "seconds); null: 24 with XD-Violence annotations "
                                                      "(annotation_format xd), else 30 (UCF-Crime)")

    def resolve(self, name: str | None) -> Path | None:
        """A list/annotation/GT path: absolute as given, else relative to ``list_dir``."""
        if name is None:
            return None
        path = Path(name).expanduser()
        return path if path.is_absolute() else Path(self.list_dir).expanduser() / path

    @property
    def train_features(self) -> str | None:
        """The folder the training list's feature paths are re-rooted onto: ``train_root``, else ``feature_root``."""
        return self.train_root or self.feature_root

    @property
    def gt_fps(self) -> float:
        """Frames per second of the test frame GT: ``fps``, else 24 for XD-Violence annotations, else 30."""
        if self.fps is not None:
            return float(self.fps)
        return 24.0 if self.annotation_format == "xd" else 30.0

    @property
    def test_features(self) -> str | None:
        """The folder the test list's feature paths are re-rooted onto: ``test_root``, else ``feature_root``."""
        return self.test_root or self.feature_root


class ModelConfig(_Strict):
    """Both branches' sizes. The defaults are the official architecture (METHOD.md section 2)."""

    model_dim: int = Field(1024, description="width of both branches (features are mapped to it)")
    input_adapter: Literal["linear", "zero_pad"] = Field(
        "linear", description="feature_dim -> model_dim: a linear layer or zero padding")
    input_standardize: bool = Field(
        False, description="improvement option: standardise features with training-set statistics")
    attn_dim: int = Field(512, description="branch 1: width of the VSSF self-attention")
    video_hidden_dim: int = Field(32, description="branch 1: hidden width of the video classifier")
    video_dropout: float = Field(0.7, description="branch 1: dropout of the video classifier")
    windows: tuple[int, ...] = Field((2, 4, 6, 8), description="branch 2: local attention window sizes")
    local_heads: int = Field(8, description="branch 2: heads of each local-window transformer")
    local_dim_head: int = Field(64, description="branch 2: width per local attention head")
    local_out_dim: int = Field(256, description="branch 2: output width per window (x len(windows) = model_dim)")
    max_len: int = Field(6750, description="branch 2: longest video in snippets (positional embedding rows)")
    global_depth: int = Field(2, description="branch 2: layers of the global transformer")
    global_heads: int = Field(4, description="branch 2: heads of the global transformer")
    global_dim_head: int = Field(256, description="branch 2: width per global attention head")
    mlp_dim: int = Field(1024, description="branch 2: feed-forward width of the global transformer")
    dropout: float = Field(0.5, description="branch 2: transformer dropout")
    hidden_dim: int = Field(32, description="branch 2: hidden width of the snippet classifier")
    cls_dropout: float = Field(0.7, description="branch 2: dropout of the snippet classifier")
    snippet_members: int = Field(1, ge=1, description="improvement option: K snippet branches trained side by side "
                                                      "on the same pseudo-labels, scoring as their mean")
    attention: Literal["blocked", "dense"] = Field(
        "blocked", description="local attention: blocked (memory linear in T) or dense (the reference)")
    causal: bool = Field(False, description="not in the paper: branch 2 sees only current and past snippets "
                         "(left-padded embedding convolution, past-only local windows without absolute positions, "
                         "banded causal global attention; max_len does not limit it), so live scores equal offline")
    causal_window: int = Field(1024, ge=1, description="causal global attention: each query attends the last "
                               "causal_window snippets incl. itself, in training as in streaming (model.causal only)")

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

    mean_threshold: float = Field(0.25, ge=0.0, le=1.0, description="[--thre_pesudo_a] pseudo-label mean threshold")
    var_threshold: float = Field(0.4, ge=0.0, le=1.0, description="[--thre_var_a] pseudo-label variance threshold")
    history: int = Field(3, ge=2, description="[--pl_his_num] attention history length (>= 2: unbiased variance)")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="not in the paper (0 = official): hard pseudo-labels y become "
        "y * (1 - e) + e / 2, so branch 2 is not pushed to 0/1 on labels that are mostly noise")
    score_mix: float = Field(
        0.0, ge=0.0, le=1.0, description="not in the paper (0 = official): after the warm-up the pseudo-label "
        "source is (1 - m) * attention + m * min-max(branch 2's own scores, eval mode), a consistency between the "
        "branches")
    key: Literal["auto", "video", "crop"] = Field(
        "auto", description="history key: auto (the official key of the dataset format), video or crop")


class LossConfig(_Strict):
    """The weights of the loss terms and the official quirks of their reductions."""

    video: float = Field(1.0, description="weight of branch 1's video BCE")
    triplet: float = Field(1.0, description="weight of branch 1's compactness-separation (triplet) loss")
    cos: float = Field(1.0, description="weight of branch 1's distributional-dissimilarity (cosine) loss")
    smooth: float = Field(1.0, description="weight of the smoothness loss")
    sparsity: float = Field(1.0, description="weight of the sparsity loss")
    snippet: float = Field(1.0, description="weight of branch 2's snippet BCE")
    snippet_topk_mil: float = Field(0.0, ge=0.0, description="not in the paper (0 = official): weight of a video "
                                    "BCE on the mean of branch 2's top ceil(T/16) scores per video (top-k MIL)")
    smooth_axis: Literal["batch", "time"] = Field(
        "batch", description="smoothness along batch (official, quirk 2) or time (the fix)")
    sparsity_axis: Literal["batch", "time"] = Field(
        "batch", description="sparsity along batch (official) or time")
    snippet_nan_trick: bool = Field(
        True, description="official zero-loss -> NaN -> nanmean (quirk 4); false: mean over kept elements")
    distill: float = Field(0.0, ge=0.0, le=1.0, description="not in the paper (0 = official): branch 2's loss is "
                           "(1 - d) * pseudo-label BCE + d * BCE against train.teacher's scores on every snippet of "
                           "the batch (normal videos too); needs train.teacher")


class TrainConfig(_Strict):
    """The training loop: batches, steps, optimizers, evaluation and checkpoint cadence."""

    batch_size: int = Field(32, ge=1, description="crops per half of a step: 32 normal + 32 abnormal")
    num_iters: int = Field(20000, ge=1, description="training steps")
    warm_up: int = Field(1000, ge=0, description="steps of branch 1 alone before branch 2 starts learning")
    lr_v: float = Field(1e-4, gt=0, description="learning rate of branch 1 (video)")
    lr_s: float = Field(1e-3, gt=0, description="learning rate of branch 2 (snippet)")
    weight_decay: float = Field(0.005, ge=0, description="weight decay of both optimizers")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adam (official: L2 decay, quirk 1) or adamw")
    sch_step: int = Field(4000, ge=1, description="branch 2's StepLR step size (steps)")
    sch_gamma: float = Field(0.9, gt=0, description="branch 2's StepLR decay factor")
    eval_every: int = Field(1000, ge=1, description="evaluate and checkpoint every N steps past warm_up")
    # a long run interrupted before its first evaluation would otherwise leave nothing to --resume from
    save_every: int = Field(500, ge=1, description="between evaluations, write the full checkpoints/last (for "
                                                   "train --resume) every N steps")
    log_every: int = Field(50, ge=1, description="log the mean training losses every N steps")
    seed: int = Field(42, description="random seed")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps ...")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description=">0: hold out this share of the training videos "
                                                                  "for test-free model selection")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description=">0: evaluate and save an exponential moving "
                                                               "average of the snippet branch")
    average_from: int = Field(0, ge=0, description=">0: evaluate and save the uniform average of the snippet "
                                                    "branch's weights over the steps after this one (SWA)")
    flip_prob: float = Field(0.0, ge=0.0, le=1.0, description="not in the paper (0 = official): each sample of "
                             "branch 2's batch is reversed in time with this probability, its targets with it")
    feature_noise: float = Field(0.0, ge=0.0, description="not in the paper (0 = official): Gaussian noise of this "
                                 "many per-dimension standard deviations added to branch 2's input features")
    crop_scale: float = Field(1.0, gt=0.0, le=1.0, description="not in the paper (1 = official): <1: each sample "
                              "of branch 2's batch is a random contiguous span of at least this share of its "
                              "segments, stretched back to the full length (linear; targets nearest)")
    teacher: str | None = Field(None, description="not in the paper: a trained run directory or checkpoint whose "
                                "snippet branch scores the training crops once at the start; its scores are the soft "
                                "targets of loss.distill (a second self-training round, or a causal student of a "
                                "bidirectional teacher)")
    val_top_k: int = Field(16, ge=1, description="validation video score: mean of the top-k snippet scores")
    progress: bool = Field(True, description="show progress bars")
    precision: Literal["fp32", "tf32", "bf16"] = Field(
        "fp32", description="fp32 is the faithful math; tf32/bf16 are speed options")
    compile: bool = Field(False, description="torch.compile both branches")
    tensorboard: bool = Field(False, description="also log the training losses and evaluation metrics to "
                                                 "<run_dir>/tensorboard (needs adplg[tensorboard])")

    @model_validator(mode="after")
    def _check_warm_up(self, info: ValidationInfo) -> "TrainConfig":
        # a saved checkpoint's config is only read (its training is over): see build_config(training=False)
        if (info.context or {}).get("training", True) and self.warm_up >= self.num_iters:
            raise ValueError(
                f"train.warm_up must be below train.num_iters (branch 2, the scoring branch, learns only after "
                f"warm_up steps, so the run would save an untrained scoring branch): expected warm_up < num_iters, "
                f"got warm_up {self.warm_up} >= num_iters {self.num_iters}; lower train.warm_up or raise "
                f"train.num_iters"
            )
        if self.ema_decay and self.average_from:
            raise ValueError(f"train.ema_decay and train.average_from are two ways to average the snippet branch: "
                             f"expected one of them, got ema_decay {self.ema_decay} and average_from "
                             f"{self.average_from}")
        return self


class EvalConfig(_Strict):
    """Evaluation on the test set: metrics, precision and batching."""

    far_threshold: float = Field(0.5, description="score threshold of the false-alarm rate on normal videos")
    primary: Literal["auc", "pr_auc", "ap"] = Field("auc", description="the metric runs are summarised by")
    precision: Literal["fp32", "tf32", "bf16"] = Field("fp32", description="evaluation precision")
    # (lower it to bound memory: 16384 keeps the longest UCF video's 10 crops under 1.5 GiB on a CPU)
    batch_snippets: int = Field(65536, ge=1, description="crop-snippets per forward: equal-length videos are "
                                                         "batched up to it, a long video's crops split beyond it")
    smooth_window: int = Field(0, ge=0, description="improvement option: moving average of snippet scores "
                                                    "(0 = off)")
    smooth_mode: Literal["centred", "trailing"] = Field(
        "centred", description="moving average of smooth_window: centred, or trailing (the last smooth_window scores "
        "incl. the current one: what live scoring does, so offline equals online for a causal model)")
    # the alert rules time to detect assumes (adplg.evaluation.detection); its threshold is searched per target rate
    alert_hysteresis: float = Field(0.0, ge=0, le=1, description="time to detect: on - off threshold of the alert "
                                                                "rules (0 = a plain threshold)")
    alert_min_duration_s: float = Field(0.0, ge=0, description="time to detect: alerts shorter than this are "
                                                               "dropped, and an alert is raised once it lasted this")
    alert_merge_gap_s: float = Field(0.0, ge=0, description="time to detect: alerts this close (seconds) merge")


class Config(_Strict):
    """A whole run: data, model, pseudo-labels, losses, training, evaluation, output folder."""

    name: str = Field("ucf-i3d", description="run name (run directories are <name>-seed<seed>-<time>)")
    description: str = Field("", description="free text shown by adplg presets")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    plg: PLGConfig = PLGConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    output_dir: str = Field("runs", description="folder of the run directories")

    @model_validator(mode="after")
    def _check_teacher(self) -> "Config":
        if bool(self.loss.distill) != bool(self.train.teacher):
            raise ValueError(f"loss.distill and train.teacher go together (the weight of the teacher's targets, and "
                             f"the run that gives them): expected both set or neither, got loss.distill "
                             f"{self.loss.distill} and train.teacher {self.train.teacher!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The whole config as a JSON-ready nested mapping (section -> key -> value)."""
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- presets and overrides

def _yaml_reason(exc: yaml.YAMLError) -> str:
    """A YAML parse error on one line: the parser's problem and where (never the quoted source text)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def parse_override(text: str) -> dict[str, Any]:
    """``'train.seed=3'`` -> ``{'train': {'seed': 3}}``; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise AdplgError(f"override {text!r}: expected section.key=value (e.g. train.seed=1), got no '='")
    dotted, raw = text.split("=", 1)
    parts = [part.strip() for part in dotted.strip().split(".")]
    if not all(parts):
        got = f"the key {dotted.strip()!r} with an empty part" if dotted.strip() else "no key before '='"
        raise AdplgError(f"override {text!r}: expected section.key=value (e.g. train.seed=1), got {got}")
    key = ".".join(parts)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise AdplgError(f"override {text!r}: the value of {key} is not valid YAML ({_yaml_reason(exc)}); expected a "
                         f"number, a string, a [list] or null, got {raw!r}") from None
    out: dict[str, Any] = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def read_config_file(config_file: str | Path) -> dict[str, Any]:
    """The mapping of a user YAML config file (empty for an empty file); a missing file, a folder, an unreadable or
    invalid file, or YAML that is not a mapping (a list, a number) is an :class:`AdplgError` naming the file."""
    path = Path(config_file)
    if not path.exists():
        raise AdplgError(f"config file not found: {path}")
    if not path.is_file():
        raise AdplgError(f"config file {path}: expected a YAML file, got a directory")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AdplgError(f"config file {path}: cannot be read as text ({type(exc).__name__}); expected a YAML "
                         f"file") from None
    except yaml.YAMLError as exc:
        raise AdplgError(f"config file {path} is not valid YAML: {_yaml_reason(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AdplgError(f"config file {path}: expected a mapping of sections (e.g. 'train: {{seed: 1}}'), got a "
                         f"{type(data).__name__}")
    return data


def settings(preset: str | None = None, config_file: str | Path | None = None,
             overrides: list[str] | tuple[str, ...] = (), base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The unvalidated mapping of ``base``, then a preset, a user YAML file and dotted overrides, merged in order."""
    raw: dict[str, Any] = dict(base or {})
    if preset:
        raw = merge_settings(raw, load_preset(preset))
    if config_file is not None:
        raw = merge_settings(raw, read_config_file(config_file))
    for item in overrides:
        raw = merge_settings(raw, parse_override(item))
    return raw


def build_config(preset: str | None = None, config_file: str | Path | None = None,
                 overrides: list[str] | tuple[str, ...] = (), base: dict[str, Any] | None = None, *,
                 source: str | None = None, training: bool = True) -> Config:
    """``base`` (e.g. a checkpoint's saved config) or a preset, then a user YAML file, then dotted overrides;
    validated, with errors naming the key (and ``source``, e.g. the checkpoint sidecar ``base`` came from).
    ``training=False`` (a checkpoint's config, read to score or evaluate) skips the checks of settings that only
    matter to a run that is about to train (``train.warm_up < train.num_iters``)."""
    if base is not None and not isinstance(base, dict):
        raise AdplgError(f"invalid configuration ({source or 'config'}): expected a mapping of sections, got a "
                         f"{type(base).__name__}")
    raw = settings(preset, config_file, overrides, base)
    try:
        return Config.model_validate(raw, context={"training": training})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            got = err.get("input")
            if err["type"] == "extra_forbidden":
                lines.append(unknown_key_message(where))
            elif err["type"] == "value_error":  # a model validator: its message names the keys
                msg = err["msg"].removeprefix("Value error, ")
                lines.append(msg if msg.startswith(f"{where}.") else f"{where}: {msg}")
            elif isinstance(got, dict):
                lines.append(f"{where}: {err['msg']}")
            else:
                lines.append(f"{where}: {err['msg']} (got {got!r})")
        source = source or (f"preset {preset!r}" if preset else "config")
        raise AdplgError(f"invalid configuration ({source}):\n  " + "\n  ".join(lines)) from None


# ---------------------------------------------------------------- the keys: suggestions and the reference listing

def _walk_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo, bool]]:
    """``(dotted key, FieldInfo, is a section)`` of every field of ``model``, sections before their keys (an optional
    section, ``Section | None``, is a section too)."""
    for name, info in model.model_fields.items():
        key = prefix + name
        section = _section_model(info.annotation)
        yield key, info, section is not None
        if section is not None:
            yield from _walk_fields(section, key + ".")


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a section's annotation (``Section`` or ``Section | None``), else None."""
    import typing

    args = typing.get_args(annotation)
    options = args if type(None) in args else (annotation,)
    models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def unknown_key_message(key: str, model: type[BaseModel] | None = None,
                        listing: str = "`adplg config` lists every key") -> str:
    """``unknown key train.num_iter (did you mean train.num_iters?)``: the closest key of the same section (difflib),
    else a key of another section with a close final name (``train.history`` -> ``plg.history``). ``model``: the
    pydantic model whose keys are meant (default :class:`Config`); ``listing`` says where every key is listed."""
    names = [k for k, _, _ in _walk_fields(model or Config)]
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in names if k.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1)
    suggestion: str | None
    if close:
        suggestion = siblings[close[0]]
    else:
        leaves = [k.rpartition(".")[2] for k in names]
        close = difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.8)
        suggestion = names[leaves.index(close[0])] if close else None
    if suggestion:
        return f"unknown key {key} (did you mean {suggestion}?)"
    return f"unknown key {key} ({listing})"


def _type_name(annotation: Any) -> str:
    """A field's type as text (``int``, ``str | None``, ``Literal['a', 'b']``)."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return text.replace("typing.", "")


def config_reference(preset: str | None = None) -> list[tuple[str, object, str]]:
    """Every config key as ``(dotted key, value, description)``, in declaration order: the value in ``preset`` (the
    defaults without one) and the field's one-line description (its type where it has none). Sections such as
    ``data.layout`` are expanded into their keys (``data.layout.kind``)."""
    cfg = build_config(preset) if preset else Config()
    rows: list[tuple[str, object, str]] = []
    for key, info, section in _walk_fields(Config):
        if section:
            continue
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        rows.append((key, value, info.description or _type_name(info.annotation)))
    return rows


