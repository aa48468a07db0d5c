"""Issue 14: a table of bad inputs, run through every command (and the official seed scripts).

Each case builds its inputs in a fresh workspace (a small synthetic UCF-format set and a copy of one trained
checkpoint), runs the command in-process, and the suite asserts what a user must get: exit code 2, one
``adplg: error:`` message (argparse's ``error:`` for malformed flags) and no traceback, the file or key at fault
named, and every file that existed before byte-identical afterwards.

``python tests/test_bad_inputs.py`` runs the same table and prints the counts of the reliability issue (tried /
clear / partly clear / tracebacks / exit 0 where an error was due / existing data changed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from adplg.cli.main import main

REPO = Path(__file__).resolve().parents[1]
TRAIN_QUICK = ["train.num_iters=2", "train.warm_up=1", "train.batch_size=4", "train.progress=false",
               "data.feature_dim=64", "data.train_crops=1", "data.test_crops=1"]
PASSWD_LIKE = "".join(f"user{i}:x:{1000 + i}:{1000 + i}:User {i}:/home/user{i}:/bin/bash\n" for i in range(30))


# --------------------------------------------------------------------------------------------------- workspace
def build_base(root: Path) -> Path:
    """A checkpoint trained 30 steps on a small synthetic set (64-d, one crop); returns its ``.safetensors``."""
    from adplg.config import build_config
    from adplg.data.datasets import build_test_set, build_train_set
    from adplg.data.synthetic import generate_synthetic_ucf
    from adplg.training.engine import Trainer, create_run_dir

    data = generate_synthetic_ucf(root / "data", **SYNTHETIC)
    cfg = build_config("demo-cpu-small", overrides=[
        f"data.list_dir={data.root}", f"output_dir={root}", *TRAIN_QUICK, "train.num_iters=30", "train.warm_up=10",
        "train.eval_every=30", "train.log_every=30"])
    run = create_run_dir(cfg, root / "run")
    Trainer(cfg, build_train_set(cfg, progress=False), build_test_set(cfg, progress=False), run).fit()
    return run / "checkpoints" / "last.safetensors"


SYNTHETIC = dict(num_train_normal=8, num_train_abnormal=8, num_test_normal=4, num_test_abnormal=3, feature_dim=64,
                 crops=1, max_snippets=60, seed=3)


class Workspace:
    """One case's folder: ``data/`` (synthetic UCF lists, annotations, features), ``ckpt.safetensors`` + ``.json``
    (a copy of the base checkpoint) and helpers that write bad files into it."""

    def __init__(self, root: Path, base_checkpoint: Path):
        from adplg.data.synthetic import generate_synthetic_ucf

        self.root = root
        self.data = generate_synthetic_ucf(root / "data", **SYNTHETIC).root
        self.ckpt = root / "ckpt.safetensors"
        shutil.copy(base_checkpoint, self.ckpt)
        shutil.copy(base_checkpoint.with_suffix(".json"), self.ckpt.with_suffix(".json"))
        self.features = root / "features"  # one test video's features, to score
        self.features.mkdir()
        shutil.copy(self.test_video("Normal"), self.features / "clip.npy")

    @property
    def annotations(self) -> Path:
        return self.data / "UCF_Annotation.txt"

    def test_video(self, kind: str = "Shoplifting") -> Path:
        return sorted((self.data / "test").rglob(f"{kind}*.npy"))[0]

    def train_video(self) -> Path:
        return sorted((self.data / "train").rglob("*.npy"))[0]

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def edit_sidecar(self, change: Callable[[dict], object]) -> None:
        sidecar = self.ckpt.with_suffix(".json")
        meta = json.loads(sidecar.read_text())
        change(meta)
        sidecar.write_text(json.dumps(meta))

    def edit_annotations(self, change: Callable[[list[str]], list[str]]) -> None:
        lines = self.annotations.read_text().splitlines()
        self.annotations.write_text("\n".join(change(lines)) + "\n")

    # -------------------------------------------------------------------------------------- command lines
    def train(self, *extra: str) -> list[str]:
        return ["train", "--preset", "demo-cpu-small", f"data.list_dir={self.data}",
                f"output_dir={self.root / 'runs'}", *TRAIN_QUICK, *extra]

    def test(self, *extra: str, model: Path | None = None) -> list[str]:
        return ["test", "--model_file", str(model or self.ckpt), f"data.list_dir={self.data}",
                f"output_dir={self.root / 'runs'}", "--no_plot", *extra]

    def score(self, *extra: str, inputs: Path | None = None) -> list[str]:
        return ["score", str(inputs or self.features), "--checkpoint", str(self.ckpt),
                "--out", str(self.root / "scores"), "--no-plot", "--quiet", *extra]

    def calibrate(self, *extra: str, inputs: Path | None = None) -> list[str]:
        return ["calibrate", str(inputs or self.features), "--checkpoint", str(self.ckpt), "--target-far", "0.1",
                "--out", str(self.root / "rules.json"), "--quiet", *extra]

    def export(self, *extra: str) -> list[str]:
        deployed = self.root / "model.ts"  # a model already deployed there must survive every failed export
        if not deployed.exists():
            deployed.write_bytes(b"deployed model")
        return ["export", "--checkpoint", str(self.ckpt), "--format", "torchscript",
                "--out", str(self.root / "model.ts"), *extra]

    def doctor(self, *extra: str) -> list[str]:
        return ["doctor", "--preset", "demo-cpu-small", "--list_dir", str(self.data), "--quiet", *extra]

    def extract(self, *extra: str, inputs: Path | None = None) -> list[str]:
        video = inputs or self.write("videos/clip.mp4", b"")
        return ["extract", str(video), "--backbone", "i3d", "--weights", str(self.root / "i3d.pt"),
                "--out", str(self.root / "extracted"), "--crops", "1", "--device", "cpu", "--quiet", *extra]


def do(*steps):
    """The last of ``steps`` (all evaluated in order): a case's preparation, then its command line."""
    return steps[-1]


def truncated_npy(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bad_crc_safetensors(path: Path) -> None:
    data = bytearray(path.read_bytes())
    header = struct.unpack("<Q", data[:8])[0]
    data[8 + header + 7] ^= 0xFF  # one weight byte: the sidecar's sha256 no longer matches
    path.write_bytes(bytes(data))


def video_weights(w: Workspace) -> Path:
    """Random I3D weights in the public layout, for the extraction cases that get past the weights."""
    from backbone_weights import write_random_i3d  # tests/backbone_weights.py

    return write_random_i3d(w.root / "i3d.pt")


# ------------------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """``build(workspace) -> (argv, needles)``: the command line, and the strings the error must contain."""

    id: str
    build: Callable[[Workspace], tuple[list[str], list[str]]]
    script: str | None = None  # run `python <script> argv` in a subprocess instead of `adplg argv`


CASES: list[Case] = []


def case(id: str, script: str | None = None):
    def register(build):
        CASES.append(Case(id, build, script))
        return build
    return register


def cases(id: str, values, make: Callable):
    """One case per value: ``make(workspace, value) -> (argv, needles)``."""
    for value in values:
        CASES.append(Case(f"{id}[{value}]", lambda w, v=value: make(w, v)))


# ---- configuration (every command that takes one reads it the same way; train and test here)
cases("train-override-malformed", ["train.seed=[1", "train..seed=1", "=3", "train.seed"],
      lambda w, v: (w.train(v), [repr(v)]))
cases("train-override-bad-number", ["train.lr_v=-1", "train.lr_s=0", "train.sch_step=0", "train.sch_gamma=-0.5",
                              "train.weight_decay=-1", "train.lr_v=.nan", "train.batch_size=0", "train.seed=abc",
                              "train.num_iters=-3", "eval.smooth_window=-1", "data.feature_dim=0"],
      lambda w, v: (w.train(v), [v.split("=")[0]]))
cases("train-override-unknown-key", ["train.sed=1", "trian.seed=1", "data.listdir=x"],
      lambda w, v: (w.train(v), [{"trian.seed=1": "trian"}.get(v, v.split("=")[0])]))
case("train-warm-up-not-below-num-iters")(lambda w: (w.train("train.warm_up=5", "train.num_iters=5"),
                                               ["train.warm_up", "num_iters"]))
case("train-unknown-preset")(lambda w: (["train", "--preset", "ucf-i3dd"], ["ucf-i3dd"]))
cases("train-config-file", ["missing", "folder", "list", "number", "invalid-yaml", "binary"],
      lambda w, v: (w.train("--config", str(_config_file(w, v))), [str(w.root / "user.yaml")]))


def _config_file(w: Workspace, kind: str) -> Path:
    path = w.root / "user.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind != "missing":
        w.write("user.yaml", {"list": "- 1\n- 2\n", "number": "3\n", "invalid-yaml": "train: [1\n",
                              "binary": b"\x80\x81\xfe\x00" * 8}[kind])
    return path


# ---- train: data and outputs
case("train-output-dir-is-a-file")(lambda w: (w.train(f"output_dir={w.write('runs', 'x')}"), [str(w.root / "runs")]))
case("train-run-dir-is-a-file")(lambda w: (w.train("--run_dir", str(w.write("run.txt", "x"))), ["run.txt"]))
case("train-resume-missing")(lambda w: (w.train("--resume", str(w.root / "nope")), [str(w.root / "nope")]))
case("train-list-dir-missing")(lambda w: (w.train(f"data.list_dir={w.root / 'nodata'}"), [str(w.root / "nodata")]))
case("train-list-not-a-list")(lambda w: (w.train(f"data.train_list={w.write('passwd', PASSWD_LIKE)}"), ["passwd"]))
case("train-feature-truncated")(lambda w: (do(truncated_npy(w.train_video()), w.train()), [w.train_video().name]))
case("train-feature-wrong-dim")(
    lambda w: (np.save(w.train_video(), np.zeros((20, 32), np.float32)) or w.train(), [w.train_video().name, "32"]))
case("train-feature-nan")(
    lambda w: (np.save(w.train_video(), np.full((20, 64), np.nan, np.float32)) or w.train(), [w.train_video().name]))
case("train-feature-not-npy")(lambda w: (do(w.train_video().write_text("hello"), w.train()), [w.train_video().name]))
case("train-batch-too-large")(lambda w: (w.train("train.batch_size=1000"), ["batch_size"]))
case("train-annotation-past-end")(lambda w: (w.edit_annotations(
    lambda lines: [line.replace(" 343 443 ", " 343 99999 ") for line in lines]) or w.train(), ["Shoplifting001"]))
case("train-annotation-missing-line")(lambda w: (w.edit_annotations(
    lambda lines: [line for line in lines if "Shoplifting001" not in line]) or w.train(), ["Shoplifting001"]))
case("train-annotation-misspelt")(lambda w: (w.edit_annotations(
    lambda lines: [line.replace("Shoplifting001", "Shoplifting01") for line in lines]) or w.train(),
    ["Shoplifting001"]))
case("train-no-abnormal-annotations")(lambda w: (w.edit_annotations(
    lambda lines: [line for line in lines if " Normal " in line]) or w.train(), [str(w.annotations)]))
case("train-annotation-garbage")(lambda w: (do(w.annotations.write_text(PASSWD_LIKE), w.train()),
                                            [str(w.annotations)]))
case("train-gt-file-short")(lambda w: (np.save(w.root / "gt.npy", np.zeros(10, np.float32))
                                       or w.train(f"data.gt_file={w.root / 'gt.npy'}"), ["gt.npy"]))


# ---- checkpoints (test reads them; score, calibrate and export through the same loader)
def _sidecar_case(w: Workspace, kind: str) -> tuple[list[str], list[str]]:
    sidecar = w.ckpt.with_suffix(".json")
    if kind == "binary":
        sidecar.write_bytes(b"\x80\x81\xfe\x00" * 8)
    elif kind == "list":
        sidecar.write_text("[1, 2]")
    elif kind == "no-config":
        w.edit_sidecar(lambda meta: meta.pop("config"))
    elif kind == "config-list":
        w.edit_sidecar(lambda meta: meta.update(config=[1]))
    elif kind == "missing":
        sidecar.unlink()
    elif kind == "other-step":  # the torn pair of the probe: weights of one save, sidecar of another
        w.edit_sidecar(lambda meta: meta.update(step=meta["step"] - 5))
    elif kind == "bad-config-value":
        w.edit_sidecar(lambda meta: meta["config"]["model"].update(dropout="high"))
    return w.test(), [str(sidecar)]


cases("test-sidecar", ["binary", "list", "no-config", "config-list", "missing", "other-step", "bad-config-value"],
      _sidecar_case)
case("test-weights-corrupt")(lambda w: (bad_crc_safetensors(w.ckpt) or w.test(), [str(w.ckpt)]))
case("test-weights-truncated")(lambda w: (do(truncated_npy(w.ckpt), w.test()), [str(w.ckpt)]))
case("test-model-file-missing")(lambda w: (w.test(model=w.root / "nope.safetensors"), ["nope.safetensors"]))
case("test-official-pkl-garbage")(lambda w: (w.test(model=w.write("a_model_s_1.pkl", b"\x80\x02garbage")),
                                             ["a_model_s_1.pkl"]))
case("test-official-pkl-wrong-shapes")(lambda w: (w.test(model=_official_wrong_shapes(w)), ["b_model_s_1.pkl"]))
case("test-out-is-a-file")(lambda w: (w.test("--out", str(w.write("out.txt", "x"))), ["out.txt"]))
case("test-crafted-sidecar-data-paths")(lambda w: (w.edit_sidecar(lambda meta: meta["config"]["data"].update(
    list_dir=str(w.root), test_list="passwd")) or w.write("passwd", PASSWD_LIKE) and
    ["test", "--model_file", str(w.ckpt), "--no_plot", f"output_dir={w.root / 'runs'}"], ["passwd"]))
case("test-annotation-past-end")(lambda w: (w.edit_annotations(
    lambda lines: [line.replace(" 230 270 ", " 230 5000 ") for line in lines]) or w.test(), ["RoadAccidents010"]))


def _official_wrong_shapes(w: Workspace) -> Path:
    """An authors'-format snippet-branch state dict whose tensors all have the wrong shape."""
    import torch

    from adplg.models.convert import _NET_S_MAP

    path = w.root / "b_model_s_1.pkl"
    torch.save({key: torch.zeros(*(n + 1 for n in shape)) for key, (_, shape) in _NET_S_MAP.items()}, path)
    return path


# ---- score and calibrate
cases("score-fps", ["nan", "inf", "0", "-5", "abc"], lambda w, v: (w.score("--fps", v), ["fps"]))
cases("score-threshold", ["nan", "inf", "-0.5", "1.5"], lambda w, v: (w.score("--threshold", v), ["threshold"]))
cases("score-min-duration", ["-1", "nan"], lambda w, v: (w.score("--min-duration", v), ["min-duration"]))
case("score-off-above-on")(lambda w: (w.score("--threshold", "0.5", "--off-threshold", "0.8"), ["off"]))
case("score-out-is-a-file")(lambda w: (w.score("--out", str(w.write("scores.txt", "x"))), ["scores.txt"]))
case("score-empty-folder")(lambda w: (w.score(inputs=w.folder("empty")), [str(w.root / "empty")]))
case("score-missing-input")(lambda w: (w.score(inputs=w.root / "nope.npy"), ["nope.npy"]))
case("score-feature-truncated")(lambda w: (do(truncated_npy(w.features / "clip.npy"), w.score()), ["clip.npy"]))
case("score-feature-wrong-dim")(lambda w: (np.save(w.features / "clip.npy", np.zeros((20, 32), np.float32))
                                           or w.score(), ["clip.npy", "32"]))
case("score-feature-text")(lambda w: (do((w.features / "clip.npy").write_text("hello"), w.score()), ["clip.npy"]))
case("score-half-extracted")(lambda w: (_half_extracted(w), ["clip"]))
case("score-alerts-garbage")(lambda w: (w.score("--alerts", str(w.write("alerts.json", "{no json"))),
                                        ["alerts.json"]))
case("score-alerts-nan")(lambda w: (w.score("--alerts", str(w.write("alerts.json", json.dumps(
    {"on_threshold": math.nan})))), ["alerts.json"]))
case("score-annotations-missing")(lambda w: (w.score("--annotations", str(w.root / "nope.txt")), ["nope.txt"]))
case("score-checkpoint-missing")(lambda w: (["score", str(w.features), "--checkpoint", str(w.root / "no.safetensors"),
                                             "--out", str(w.root / "scores")], ["no.safetensors"]))
case("score-video-without-weights")(lambda w: (w.score(inputs=w.write("v/clip.mp4", b"not a video")), ["weights"]))
cases("calibrate-target-far", ["1", "1.5", "nan", "-0.1"],
      lambda w, v: (w.calibrate()[:4] + ["--target-far", v] + w.calibrate()[6:], ["target-far"]))
cases("calibrate-hysteresis", ["-1", "nan"], lambda w, v: (w.calibrate("--hysteresis", v), ["hysteresis"]))
case("calibrate-out-is-a-folder")(lambda w: (w.calibrate()[:-3] + ["--out", str(w.folder("rules")), "--quiet"],
                                             [str(w.root / "rules")]))
case("calibrate-out-under-a-file")(lambda w: (w.calibrate()[:-3] + ["--out", str(w.write("f", "x") / "r.json"),
                                                                     "--quiet"], [str(w.root / "f")]))
case("calibrate-empty-folder")(lambda w: (w.calibrate(inputs=w.folder("empty")), [str(w.root / "empty")]))


def _half_extracted(w: Workspace) -> list[str]:
    """An `adplg extract` folder (manifest) whose video has 1 of its 2 crop files and no meta record."""
    folder = w.folder("extracted")
    (folder / "manifest.json").write_text(json.dumps({"crops": 2, "naming": "ucf", "backbone": "i3d"}))
    shutil.copy(w.test_video("Normal"), folder / "clip__0.npy")
    return w.score(inputs=folder)


# ---- export
cases("export-atol", ["-1", "nan", "inf"], lambda w, v: (w.export("--atol", v), ["atol"]))
case("export-out-under-a-file")(lambda w: (w.export()[:-2] + ["--out", str(w.write("f", "x") / "m.ts")],
                                           [str(w.root / "f")]))
case("export-checkpoint-missing")(lambda w: (["export", "--checkpoint", str(w.root / "no.safetensors"), "--format",
                                              "onnx"], ["no.safetensors"]))
case("export-bad-format")(lambda w: (w.export()[:3] + ["--format", "pdf"], ["pdf"]))
case("export-sidecar-list")(lambda w: (do(w.ckpt.with_suffix(".json").write_text("[]"), w.export()),
                                       [str(w.ckpt.with_suffix(".json"))]))

# ---- extract
case("extract-weights-missing")(lambda w: (w.extract(), [str(w.root / "i3d.pt")]))
case("extract-weights-garbage")(lambda w: (w.write("i3d.pt", b"\x80\x02garbage") and w.extract(), ["i3d.pt"]))
case("extract-weights-wrong-model")(lambda w: (_torch_save(w.root / "i3d.pt", {"fc.weight": np.zeros((2, 2))})
                                               or w.extract(), ["i3d.pt"]))
case("extract-out-is-a-file")(lambda w: (w.extract()[:6] + ["--out", str(w.write("ex.txt", "x"))], ["ex.txt"]))
case("extract-out-holds-foreign-features")(lambda w: (np.save(w.folder("extracted") / "clip.npy",
                                                              np.ones((3, 64), np.float32)) or w.extract(),
                                                      [str(w.root / "extracted")]))
case("extract-video-missing")(lambda w: (video_weights(w) and w.extract(inputs=w.root / "nope.mp4"), ["nope.mp4"]))
case("extract-video-not-a-video")(lambda w: (video_weights(w) and w.extract(inputs=w.write("v/x.mp4", "text")),
                                             ["x.mp4"]))
cases("extract-shard", ["3/2", "a/b", "0/0"], lambda w, v: (w.extract("--shard", v), ["shard"]))
case("extract-batch-snippets-zero")(lambda w: (w.extract("--batch-snippets", "0"), ["batch"]))


def _torch_save(path: Path, state: dict) -> None:
    import torch

    torch.save({k: torch.as_tensor(v) for k, v in state.items()}, path)


# ---- report (a folder of `adplg score` outputs -> a static site) and calibrate --verdicts
def _report(w: Workspace, scores: Path) -> list[str]:
    return ["report", str(scores), "--out", str(w.root / "report"), "--no-thumbnails"]


case("report-scores-missing")(lambda w: (_report(w, w.root / "nope"), [str(w.root / "nope")]))
case("report-scores-empty")(lambda w: (_report(w, w.folder("empty-scores")), [str(w.root / "empty-scores")]))
case("report-summary-corrupt")(lambda w: (_report(w, w.write("scores/summary.json", "{not json").parent),
                                          ["summary.json"]))
case("report-out-under-a-file")(lambda w: (["report", str(w.write("scores/cam.json", "{}").parent), "--out",
                                            str(w.write("f", "x") / "report")], [str(w.root / "f")]))
case("calibrate-verdicts-corrupt")(lambda w: (w.calibrate("--verdicts", str(w.write("verdicts.json", "[1, 2"))),
                                              ["verdicts.json"]))


# ---- watch (a file source, every number and output are checked before the model loads; an unreachable URL is
# found when connecting, after the model and backbone: tests/test_watch.py covers it with a model that has one)
def _watch(w: Workspace, *extra: str, source: str | None = None) -> list[str]:
    video = w.write("v/clip.mp4", b"")
    return ["watch", source or str(video), "--checkpoint", str(w.ckpt), "--weights", str(w.root / "clip.pt"),
            "--max-retries", "1", "--backoff", "0.01", *extra]


case("watch-source-missing")(lambda w: (_watch(w, source=str(w.root / "nope.mp4")), ["nope.mp4"]))
cases("watch-window", ["0", "-4"], lambda w, v: (_watch(w, "--window", v), ["window"]))
case("watch-delay-negative")(lambda w: (_watch(w, "--delay", "-1"), ["delay"]))
case("watch-threshold-nan")(lambda w: (_watch(w, "--threshold", "nan"), ["threshold"]))
case("watch-events-is-a-folder")(lambda w: (_watch(w, "--events", str(w.folder("events"))), [str(w.root / "events")]))
case("watch-csv-under-a-file")(lambda w: (_watch(w, "--csv", str(w.write("f", "x") / "t.csv")), [str(w.root / "f")]))
case("watch-checkpoint-missing")(lambda w: (["watch", str(w.write("v/clip.mp4", b"")), "--checkpoint",
                                             str(w.root / "no.safetensors")], ["no.safetensors"]))

# ---- doctor, demo, config
case("doctor-json-is-a-folder")(lambda w: (w.doctor("--json", str(w.folder("report"))), [str(w.root / "report")]))
case("doctor-list-dir-missing")(lambda w: (["doctor", "--preset", "demo-cpu-small", "--list_dir",
                                            str(w.root / "nodata")], [str(w.root / "nodata")]))
case("doctor-max-shown-negative")(lambda w: (w.doctor("--max_shown", "-1"), ["max_shown"]))
case("demo-out-is-a-file")(lambda w: (["demo", "--out", str(w.write("demo.txt", "x"))], ["demo.txt"]))
cases("demo-steps", ["0", "-5"], lambda w, v: (["demo", "--out", str(w.root / "demo"), "--steps", v],
                                              ["num_iters"]))
case("config-unknown-preset")(lambda w: (["config", "--preset", "nope"], ["nope"]))

# ---- the official seed scripts (`python ucf_main.py ...`), in a subprocess as users run them
case("seed-script-train-bad-override", script="ucf_main.py")(lambda w: (["train.seed=[1"], ["train.seed"]))
case("seed-script-test-missing-model", script="xd_test.py")(
    lambda w: (["--model_file", str(w.root / "no.pkl")], ["no.pkl"]))


# ------------------------------------------------------------------------------------------------------ runner
@dataclass
class Outcome:
    code: int
    err: str
    traceback: bool
    named: bool
    changed: list[str]

    @property
    def leaked(self) -> bool:
        """The message quotes a file's content wholesale (more than a few lines of :data:`PASSWD_LIKE`)."""
        return sum(f"user{i}:x:" in self.err for i in range(30)) > 3

    @property
    def clear(self) -> bool:
        return self.code == 2 and not self.traceback and self.named and "error" in self.err and not self.leaked


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_case(c: Case, root: Path, base_checkpoint: Path) -> Outcome:
    w = Workspace(root, base_checkpoint)
    argv, needles = c.build(w)
    before = snapshot(root)
    err = io.StringIO()
    traceback = False
    handler = logging.StreamHandler(err)  # warnings and errors logged by the command belong to its message
    if c.script:
        proc = subprocess.run([sys.executable, str(REPO / c.script), *argv], capture_output=True, text=True,
                              cwd=root, timeout=300)
        code, text = proc.returncode, proc.stderr
        traceback = "Traceback" in text
    else:
        logging.getLogger().addHandler(handler)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: malformed flags
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception as exc:  # noqa: BLE001 - an uncaught exception is what a user sees as a traceback
                code, traceback = 1, True
                err.write(f"Traceback: {type(exc).__name__}: {exc}")
        logging.getLogger().removeHandler(handler)
        text = err.getvalue()
    after = snapshot(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    return Outcome(code, text, traceback or "Traceback" in text, all(n in text for n in needles), changed)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    return build_base(tmp_path_factory.mktemp("bad-inputs-base"))


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case, base_checkpoint: Path, tmp_path_factory):
    # a neutral folder name: pytest's tmp_path holds the case id, which would match the needles by itself
    out = run_case(c, tmp_path_factory.mktemp("case"), base_checkpoint)
    assert not out.traceback, out.err
    assert out.code == 2, f"exit {out.code}: {out.err}"
    assert out.named, f"the error does not name the file or key: {out.err}"
    assert not out.leaked, f"the error quotes a file wholesale: {out.err}"
    assert not out.changed, f"existing files changed: {out.changed}"


def test_the_table_covers_every_command():
    from adplg.cli.main import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices) - {"presets"}  # presets takes no input
    covered = {c.id.split("-")[0] for c in CASES}
    assert commands <= covered, commands - covered
    assert len({c.id for c in CASES}) == len(CASES)


def summarize() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = build_base(Path(tmp) / "base")
        rows = []
        for i, c in enumerate(CASES):
            rows.append((c.id, run_case(c, Path(tmp) / f"case{i}", base)))
    counts = {
        "tried": len(rows),
        "clear (exit 2, named, no traceback)": sum(o.clear for _, o in rows),
        "partly clear (exit 2, file/key not named)": sum(o.code == 2 and not o.traceback and not o.named
                                                         for _, o in rows),
        "raw tracebacks": sum(o.traceback for _, o in rows),
        "file contents quoted wholesale": sum(o.leaked for _, o in rows),
        "exit 0 where an error was due": sum(o.code == 0 for _, o in rows),
        "existing data changed": sum(bool(o.changed) for _, o in rows),
    }
    for name, value in counts.items():
        print(f"{name:45s} {value}")
    for name, o in rows:
        if not o.clear or o.changed:
            print(f"\n--- {name}: exit {o.code}, changed {o.changed}\n{o.err.strip()[-600:]}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    summarize()
