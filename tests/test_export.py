"""``adplg export``: ONNX and TorchScript exports of a tiny snippet branch match the eager model (<= 1e-4) at lengths
that are and are not multiples of the windows (2, 4, 6, 8), at batch sizes 1 and 3; sidecar contents; bad inputs."""

import argparse
import json
import sys

import numpy as np
import pytest
import torch

from adplg.checkpoints.format import save_checkpoint
from adplg.checkpoints.load import load_snippet_branch
from adplg.cli.export import add_parser
from adplg.config import build_config
from adplg.deploy import export as ex
from adplg.errors import AdplgError
from adplg.models.build import build_snippet_branch, build_video_branch

TINY = ["data.feature_dim=12", "data.test_crops=2", "model.model_dim=32", "model.local_out_dim=8",
        "model.local_heads=2", "model.local_dim_head=8", "model.global_heads=2", "model.global_dim_head=8",
        "model.mlp_dim=16", "model.attn_dim=8", "model.hidden_dim=8", "model.max_len=96"]
LENGTHS = (1, 2, 37, 64, 96)  # 37: a multiple of no window; 64: of 2, 4 and 8; 96 = max_len
ATOL = 1e-4
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.:DeprecationWarning")  # TorchScript is what we test


def run_cli(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = build_config("demo-cpu-small", overrides=TINY)
    assert tuple(cfg.model.windows) == (2, 4, 6, 8)
    torch.manual_seed(0)
    net_s = build_snippet_branch(cfg)
    with torch.no_grad():  # non-trivial positional embeddings and biases
        for p in net_s.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_checkpoint(path, net_v=build_video_branch(cfg), net_s=net_s, step=7, config=cfg.to_dict())


@pytest.fixture(scope="module")
def eager(checkpoint):
    return load_snippet_branch(checkpoint)[1]


@pytest.fixture(scope="module")
def exports(checkpoint):
    """Both formats exported through the CLI (with its default check), once per module."""
    assert run_cli(["--checkpoint", str(checkpoint), "--format", "onnx"]) == 0
    assert run_cli(["--checkpoint", str(checkpoint), "--format", "torchscript"]) == 0
    return {"onnx": checkpoint.with_suffix(".onnx"), "torchscript": checkpoint.with_suffix(".ts")}


def _inputs(batch, length, seed=1):
    return torch.randn(batch, length, 12, generator=torch.Generator().manual_seed(seed + 1000 * batch + length))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("batch", [1, 3])
def test_export_matches_eager(exports, eager, fmt, batch):
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(exports[fmt]), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["features"]
        assert [o.name for o in session.get_outputs()] == ["scores"]
        batch_axis, time_axis, dim = session.get_inputs()[0].shape
        assert dim == 12 and isinstance(batch_axis, str) and isinstance(time_axis, str)  # dynamic axes
        run = lambda x: session.run(["scores"], {"features": x.numpy()})[0]  # noqa: E731
    else:
        module = torch.jit.load(str(exports[fmt]))
        run = lambda x: module(x).detach().numpy()  # noqa: E731
    for length in LENGTHS:
        x = _inputs(batch, length)
        with torch.no_grad():
            want = eager(x).numpy()
        got = run(x)
        assert got.shape == (batch, length)
        assert np.abs(got - want).max() <= ATOL, (fmt, batch, length)


def test_sidecar(exports, checkpoint):
    import hashlib

    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for fmt, path in exports.items():
        side = json.loads(ex.sidecar_path(path).read_text())
        assert side["export_format"] == fmt and side["format"] == "adplg-export-1"
        assert side["inputs"] == [{"name": "features", "dtype": "float32", "shape": ["batch", "time", 12]}]
        assert side["outputs"][0]["name"] == "scores" and side["outputs"][0]["shape"] == ["batch", "time"]
        assert (side["feature_dim"], side["max_len"], side["snippet_frames"], side["test_crops"]) == (12, 96, 16, 2)
        assert side["config"]["model"]["model_dim"] == 32
        assert side["source"]["sha256"] == sha and side["source"]["checkpoint"] == str(checkpoint)
        assert side["versions"]["torch"] == torch.__version__
        assert "NOT part of the exported graph" in side["thresholds_note"]
        assert side["check"]["passed"] and side["check"]["max_abs_diff_overall"] <= ATOL
        assert set(side["check"]["max_abs_diff"]) == {f"batch={b},time={t}" for b in (1, 3) for t in (37, 64)}
    assert json.loads(ex.sidecar_path(exports["onnx"]).read_text())["opset"] >= 18
    # the checkpoint's own sidecar (tiny.json) is untouched: exports use <file>.json
    assert json.loads(checkpoint.with_suffix(".json").read_text())["step"] == 7


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_check_export_api(exports, eager, fmt):
    result = ex.check_export(exports[fmt], eager, lengths=(2, 37), atol=ATOL)
    assert result["passed"] and set(result["max_abs_diff"]) == {"batch=1,time=2", "batch=1,time=37",
                                                                "batch=3,time=2", "batch=3,time=37"}
    with pytest.raises(AdplgError, match=r"1\.\.max_len=96.*97"):
        ex.check_export(exports[fmt], eager, lengths=(37, 97))


def test_longer_than_max_len_fails(exports):
    x = _inputs(1, 97).numpy()
    with pytest.raises(Exception, match="96 by 97"):  # onnxruntime: broadcast error at the positional embedding
        ex.load_exported(exports["onnx"])(x)
    with pytest.raises(Exception, match=r"T=97 exceeds.*max_len=96"):  # TorchScript: the model's own message
        ex.load_exported(exports["torchscript"])(x)
    with pytest.raises(Exception, match=r"expected features of shape \[B, T, 12\], got \[1, 5, 13\]"):
        ex.load_exported(exports["torchscript"])(np.zeros((1, 5, 13), np.float32))


def test_failed_check_removes_export(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "check_export", lambda *a, **k: {"passed": False, "max_abs_diff": {"batch=1,time=37": 0.5},
                                                             "max_abs_diff_overall": 0.5})
    out = tmp_path / "bad.ts"
    with pytest.raises(AdplgError, match=r"expected max \|export - eager\| <= 0.0001, got 0.5"):
        run_cli(["--checkpoint", str(checkpoint), "--format", "torchscript", "--out", str(out)])
    assert not out.exists() and not ex.sidecar_path(out).exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary files left either


def test_out_folder_and_no_check(checkpoint, tmp_path):
    assert run_cli(["--checkpoint", str(checkpoint), "--format", "torchscript", "--out", str(tmp_path), "--no-check",
                    "model.attention=dense"]) == 0
    side = json.loads((tmp_path / "tiny.ts.json").read_text())
    assert "check" not in side and side["local_attention"] == "blocked"
    assert side["config"]["model"]["attention"] == "dense"


def test_bad_inputs(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(AdplgError, match=r"checkpoint not found: .*nope\.safetensors.*expected"):
        run_cli(["--checkpoint", str(tmp_path / "nope.safetensors"), "--format", "onnx"])
    with pytest.raises(AdplgError, match=r"unknown export format 'tflite': expected one of onnx, torchscript"):
        run_cli(["--checkpoint", str(checkpoint), "--format", "tflite"])
    with pytest.raises(AdplgError, match="opset too old: expected >= 18.*got 11"):
        run_cli(["--checkpoint", str(checkpoint), "--format", "onnx", "--opset", "11", "--out", str(tmp_path)])
    _, net_s = load_snippet_branch(checkpoint)
    with pytest.raises(AdplgError, match="feature_dim does not fit the model: expected 12.*got 13"):
        ex.export_onnx(net_s, tmp_path / "b.onnx", feature_dim=13)
    with pytest.raises(AdplgError, match=r"cannot tell the format of .*x\.bin.*'\.bin'"):
        (tmp_path / "x.bin").write_bytes(b"")
        ex.load_exported(tmp_path / "x.bin")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails like a missing package
    with pytest.raises(AdplgError, match=r"missing: onnxruntime.*pip install adplg\[export\]"):
        run_cli(["--checkpoint", str(checkpoint), "--format", "onnx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        run_cli(["--help"])
    text = capsys.readouterr().out
    assert text.count("adplg export --checkpoint") == 3 and "--no-check" in text


def test_onnx_export_is_quiet(checkpoint, tmp_path, capfd, caplog):
    """The exporter and the onnxscript optimiser log ~370 INFO lines at the CLI's INFO level: only our summary shows,
    and the loggers' levels are restored afterwards."""
    import logging

    caplog.set_level(logging.INFO)  # what `adplg` configures (logging.basicConfig(level=INFO))
    logging.getLogger("onnxscript").setLevel(logging.DEBUG)
    before = {name: logging.getLogger(name).level for name in ("onnxscript", "onnx_ir", "torch.onnx")}
    assert run_cli(["--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(tmp_path), "--no-check"]) == 0
    out, err = capfd.readouterr()
    lines = out.splitlines() + err.splitlines() + [r.getMessage() for r in caplog.records]
    assert len(lines) < 10, "\n".join(lines[:20])
    assert out.startswith("exported onnx:") and "check skipped" in out
    assert {name: logging.getLogger(name).level for name in before} == before
    logging.getLogger("onnxscript").setLevel(logging.NOTSET)
