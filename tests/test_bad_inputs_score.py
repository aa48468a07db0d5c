"""The bad-input table (issue 14), `adplg score`, `calibrate`, `export` and `extract` cases."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
from bad_inputs_harness import CaseTable, Workspace, base_checkpoint, do, truncated_npy, video_weights  # noqa: F401 - base_checkpoint: the fixture

table = CaseTable()
case, cases = table.case, table.cases


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


# ---- issue 26: hostile or damaged TorchScript CLIP weights (built as tests/test_torchscript_weights.py does) and
# .npy files that are not numeric arrays
def _extract_clip(w: Workspace, weights: Path) -> list[str]:
    video = w.write("v/clip.mp4", b"")
    return ["extract", str(video), "--backbone", "clip", "--weights", str(weights), "--out", str(w.root / "out"),
            "--device", "cpu", "--quiet"]


def _hostile_setstate(w: Workspace) -> Path:
    import warnings

    import torch
    from test_torchscript_weights import HostileBlock
    from torch import nn

    root = nn.Module()
    root.visual = HostileBlock()
    path = w.root / "hostile_setstate.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(root).save(str(path))
    return path


def _hostile_reduce(w: Workspace) -> Path:
    """A benign archive whose data.pkl runs ``exec`` (rewriting ``marker.txt``, which exists: a run is a change)."""
    import pickle

    from backbone_weights import write_random_clip
    from test_torchscript_weights import SMALL, WritesMarker, replace_entry

    marker = w.write("marker.txt", "not run")
    benign = write_random_clip(w.root / "benign.pt", seed=1, jit=True, **SMALL)
    return replace_entry(benign, w.root / "hostile_reduce.pt", "/data.pkl",
                         pickle.dumps({"visual": WritesMarker(marker)}, protocol=4))


def _damaged_archive(w: Workspace) -> Path:
    from backbone_weights import write_random_clip
    from test_torchscript_weights import SMALL, replace_entry

    benign = write_random_clip(w.root / "benign.pt", seed=1, jit=True, **SMALL)
    return replace_entry(benign, w.root / "damaged.pt", "/data/0", None)


case("extract-weights-hostile-setstate")(lambda w: (_extract_clip(w, _hostile_setstate(w)), [
    f"CLIP weights file {w.root / 'hostile_setstate.pt'}: TorchScript archive refused", "never runs their code"]))
case("extract-weights-hostile-reduce")(lambda w: (_extract_clip(w, _hostile_reduce(w)), [
    f"CLIP weights file {w.root / 'hostile_reduce.pt'}: TorchScript archive refused",
    "data.pkl refers to builtins.exec"]))
case("extract-weights-damaged-archive")(lambda w: (_extract_clip(w, _damaged_archive(w)), [
    "damaged.pt", "damaged TorchScript archive: storage blob", "/data/0 is missing"]))
case("score-feature-text-header")(lambda w: (do((w.features / "clip.npy").write_text("hello"), w.score()), [
    "clip.npy", "not a .npy file: expected a .npy header starting with b'\\x93NUMPY', got b'hello'"]))
case("score-feature-object-array")(lambda w: (np.save(w.features / "clip.npy", np.array([1, "a"], dtype=object),
                                                      allow_pickle=True) or w.score(), [
    "clip.npy", "wrong dtype: expected a numeric array, got an array of Python objects"]))
case("score-feature-garbled-header")(lambda w: (_garbled_header(w.features / "clip.npy") or w.score(), [
    "clip.npy", "corrupt .npy header: "]))


def _garbled_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data.replace(b"'descr'", b"'dXscr'", 1))


def _torch_save(path: Path, state: dict) -> None:
    import torch

    torch.save({k: torch.as_tensor(v) for k, v in state.items()}, path)


test_bad_input = table.pytest_test()
