"""Issue 14 (3, 4): output safety. Every command checks its output paths before any compute (a file where a folder
is needed or the reverse, a parent that is a file, a folder that cannot be written: one ``adplg: error:`` line, exit
2, the path named, nothing changed); a full disk inside an atomic write leaves the old file and no temporary;
``adplg export`` replaces a deployed model only after the new one passed its check; ``adplg extract`` never writes
into a folder of foreign feature files."""

import errno
import json
import os

import pytest
import torch

import adplg.io
from adplg.checkpoints.format import save_checkpoint
from adplg.cli.main import main
from adplg.config import build_config
from adplg.data.extraction import check_extract_folder
from adplg.deploy import export as ex
from adplg.errors import AdplgError
from adplg.io import OutputError, atomic_write_bytes, atomic_write_text, check_output_dir, check_output_file
from adplg.models.build import build_snippet_branch, build_video_branch

pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.:DeprecationWarning")
OLD = b"the file that was here before\n"


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def refused(capsys, argv, *named):
    """``adplg ARGV`` exits 2 with one error line naming every one of ``named``, and no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("adplg: error: ") and "Traceback" not in err, err
    for item in named:
        assert str(item) in err, (item, err)
    return err


@pytest.fixture()
def existing_file(tmp_path):
    path = tmp_path / "taken"
    path.write_bytes(OLD)
    return path


# ---------------------------------------------------------------------------------------------------- adplg.io
def test_check_output_dir_and_file(tmp_path, existing_file):
    with pytest.raises(OutputError, match=rf"{existing_file}: it is a file; expected a folder"):
        check_output_dir(existing_file, "x --out")
    with pytest.raises(OutputError, match=rf"{existing_file / 'sub'}: cannot be created because {existing_file} is a "
                                          r"file; expected a folder"):
        check_output_dir(existing_file / "sub")
    with pytest.raises(OutputError, match=rf"{tmp_path}: it is a folder; expected a file"):
        check_output_file(tmp_path)
    with pytest.raises(OutputError, match=rf"because {existing_file} is a file"):
        check_output_file(existing_file / "report.json")
    # fine paths pass and leave nothing behind: no folders made for the check, no probe file
    assert check_output_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"
    check_output_file(tmp_path / "d" / "rules.yaml")
    check_output_file(existing_file)  # an existing file is replaced later, atomically
    check_output_dir(tmp_path)
    assert listing(tmp_path) == ["taken"] and existing_file.read_bytes() == OLD
    assert isinstance(OutputError("m"), AdplgError) and isinstance(OutputError("m"), OSError)


def test_a_folder_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(adplg.io.tempfile, "mkstemp", denied)  # as a read-only folder does (tests may run as root)
    with pytest.raises(OutputError, match=rf"score --out {tmp_path}: not writable: permission denied"):
        check_output_dir(tmp_path, "score --out")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_in_atomic_write_keeps_the_old_file(tmp_path, existing_file, monkeypatch, code):
    def full(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(adplg.io.os, "fsync", full)
    with pytest.raises(AdplgError, match=rf"cannot write {existing_file}: the disk is full") as info:
        atomic_write_bytes(existing_file, b"new contents, never seen")
    assert info.value.errno == code
    with pytest.raises(AdplgError, match="disk is full"):
        atomic_write_text(tmp_path / "fresh.json", "{}")
    assert existing_file.read_bytes() == OLD
    assert listing(tmp_path) == ["taken"]  # no temporary file, no half-written new one


def test_permission_error_in_atomic_write(tmp_path, existing_file, monkeypatch):
    def denied(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(adplg.io.os, "replace", denied)
    with pytest.raises(AdplgError, match=rf"cannot write {existing_file}: permission denied"):
        atomic_write_text(existing_file, "new")
    assert existing_file.read_bytes() == OLD and listing(tmp_path) == ["taken"]


def test_atomic_write_onto_a_folder_or_under_a_file(tmp_path, existing_file):
    (tmp_path / "folder").mkdir()
    with pytest.raises(AdplgError, match=rf"cannot write {tmp_path / 'folder'}: it is a folder"):
        atomic_write_text(tmp_path / "folder", "x")
    with pytest.raises(AdplgError, match=rf"cannot write {existing_file / 'x.json'}"):
        atomic_write_text(existing_file / "x.json", "x")
    assert listing(tmp_path) == ["folder", "taken"] and listing(tmp_path / "folder") == []


# ------------------------------------------------------------------------- every command, before any compute
# Inputs, data and checkpoints are missing in these runs: the error is about the output, so it was checked first.
def test_train_outputs(capsys, tmp_path, existing_file):
    nowhere = f"data.list_dir={tmp_path / 'no-lists'}"
    refused(capsys, ["train", "--preset", "demo-cpu-small", "--run_dir", str(existing_file), nowhere],
            existing_file, "expected a folder")
    refused(capsys, ["train", "--preset", "demo-cpu-small", f"output_dir={existing_file}", nowhere],
            existing_file, "output_dir")
    refused(capsys, ["train", "--preset", "demo-cpu-small", "--output_dir", str(existing_file / "runs"), nowhere],
            existing_file / "runs", "is a file")
    assert existing_file.read_bytes() == OLD and listing(tmp_path) == ["taken"]


def test_test_score_calibrate_demo_outputs(capsys, tmp_path, existing_file):
    missing = str(tmp_path / "missing.safetensors")
    refused(capsys, ["test", "--model_file", missing, "--out", str(existing_file)], existing_file, "test --out")
    refused(capsys, ["score", str(tmp_path / "f.npy"), "--checkpoint", missing, "--out", str(existing_file)],
            existing_file, "score --out")
    refused(capsys, ["score", str(tmp_path / "f.npy"), "--checkpoint", missing, "--out",
                     str(existing_file / "scores")], existing_file / "scores", "is a file")
    refused(capsys, ["calibrate", str(tmp_path / "f.npy"), "--checkpoint", missing, "--target-far", "0.01",
                     "--out", str(tmp_path)], tmp_path, "is a folder; expected a file")
    refused(capsys, ["calibrate", str(tmp_path / "f.npy"), "--checkpoint", missing, "--target-far", "0.01",
                     "--out", str(existing_file / "cam.alerts.yaml")], existing_file / "cam.alerts.yaml")
    refused(capsys, ["demo", "--out", str(existing_file)], existing_file, "demo --out")
    assert existing_file.read_bytes() == OLD and listing(tmp_path) == ["taken"]


def test_calibrate_default_rules_file_beside_the_checkpoint(capsys, tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(OLD)  # never loaded: the rules path is checked first
    (tmp_path / "model.alerts.yaml").mkdir()
    refused(capsys, ["calibrate", str(tmp_path / "f.npy"), "--checkpoint", str(checkpoint), "--target-far", "0.01"],
            tmp_path / "model.alerts.yaml", "is a folder")
    assert checkpoint.read_bytes() == OLD


def test_extract_doctor_export_outputs(capsys, tmp_path, existing_file):
    refused(capsys, ["extract", str(tmp_path / "v.mp4"), "--backbone", "i3d", "--weights", str(tmp_path / "w.pt"),
                     "--out", str(existing_file)], existing_file, "expected a folder")
    refused(capsys, ["doctor", str(tmp_path / "data"), "--json", str(tmp_path)], tmp_path, "doctor --json",
            "expected a file")
    refused(capsys, ["doctor", str(tmp_path / "data"), "--json", str(existing_file / "r.json")], existing_file)
    checkpoint = tmp_path / "tiny.safetensors"
    checkpoint.write_bytes(OLD)  # never loaded: the output path is checked first
    refused(capsys, ["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--out",
                     str(existing_file / "m.ts")], existing_file / "m.ts", "is a file")
    (tmp_path / "deploy" / "tiny.ts").mkdir(parents=True)  # --out a folder: <stem>.ts inside it, here a folder
    refused(capsys, ["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--out",
                     str(tmp_path / "deploy")], tmp_path / "deploy" / "tiny.ts", "is a folder")
    assert existing_file.read_bytes() == OLD and checkpoint.read_bytes() == OLD
    assert listing(tmp_path) == ["deploy", "taken", "tiny.safetensors"]


def test_an_unwritable_output_folder(capsys, tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(adplg.io.tempfile, "mkstemp", denied)
    refused(capsys, ["score", str(tmp_path / "f.npy"), "--checkpoint", str(tmp_path / "c.safetensors"), "--out",
                     str(tmp_path)], tmp_path, "not writable")


# ---------------------------------------------------------------------------------------------------- export
TINY = ["data.feature_dim=12", "data.test_crops=1", "model.model_dim=32", "model.local_out_dim=8",
        "model.local_heads=2", "model.local_dim_head=8", "model.global_heads=2", "model.global_dim_head=8",
        "model.mlp_dim=16", "model.attn_dim=8", "model.hidden_dim=8", "model.max_len=64"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = build_config("demo-cpu-small", overrides=TINY)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_checkpoint(path, net_v=build_video_branch(cfg), net_s=build_snippet_branch(cfg), step=1,
                           config=cfg.to_dict())


@pytest.fixture()
def deployed(tmp_path):
    model = tmp_path / "deploy" / "ucf.ts"
    model.parent.mkdir()
    model.write_bytes(OLD)
    ex.sidecar_path(model).write_text('{"deployed": true}\n')
    return model


def export_argv(checkpoint, out, *more):
    return ["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--out", str(out), *more]


def test_failed_check_leaves_the_deployed_model(capsys, checkpoint, deployed, monkeypatch):
    seen = []

    def failing(path, *args, **kwargs):
        seen.append(path)
        assert path != deployed and path.is_file()  # the check runs on the new model, under a temporary name
        return {"passed": False, "max_abs_diff": {"batch=1,time=37": 0.5}, "max_abs_diff_overall": 0.5}

    monkeypatch.setattr(ex, "check_export", failing)
    refused(capsys, export_argv(checkpoint, deployed), "expected max |export - eager| <= 0.0001, got 0.5",
            f"{deployed} was left as it was")
    assert seen and deployed.read_bytes() == OLD
    assert ex.sidecar_path(deployed).read_text() == '{"deployed": true}\n'
    assert listing(deployed.parent) == ["ucf.ts", "ucf.ts.json"]  # temporaries removed


@pytest.mark.parametrize("atol", ["0", "-1e-4", "nan", "inf"])
def test_bad_atol_is_refused_before_exporting(capsys, checkpoint, deployed, atol):
    refused(capsys, export_argv(checkpoint, deployed, f"--atol={atol}"), "--atol", "finite number > 0",
            f"got {float(atol)!r}")
    assert deployed.read_bytes() == OLD and listing(deployed.parent) == ["ucf.ts", "ucf.ts.json"]


def test_a_passing_export_replaces_the_deployed_model(capsys, checkpoint, deployed):
    assert main(export_argv(checkpoint, deployed)) == 0, capsys.readouterr().err
    assert deployed.read_bytes() != OLD and torch.jit.load(str(deployed)) is not None
    side = json.loads(ex.sidecar_path(deployed).read_text())
    assert side["file"] == "ucf.ts" and side["check"]["passed"] and side["check"]["file"] == str(deployed)
    assert listing(deployed.parent) == ["ucf.ts", "ucf.ts.json"]


# ---------------------------------------------------------------------------------------------------- extract
def test_extract_refuses_a_folder_of_foreign_features(capsys, tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    foreign = folder / "Abuse001_x264.npy"
    foreign.write_bytes(OLD)
    err = refused(capsys, ["extract", str(tmp_path / "v.mp4"), "--backbone", "i3d", "--weights",
                           str(tmp_path / "w.pt"), "--out", str(folder)], folder, foreign, "empty folder")
    assert "nothing was overwritten" in err
    assert foreign.read_bytes() == OLD and listing(folder) == ["Abuse001_x264.npy"]
    # the library refuses too (scorer features folders, API users), and so does a manifest that is not ours
    with pytest.raises(AdplgError, match="no manifest.json"):
        check_extract_folder(folder)
    (folder / "manifest.json").write_text(json.dumps({"naming": "sht"}))
    with pytest.raises(AdplgError, match="not a manifest written by `adplg extract`"):
        check_extract_folder(folder)
    assert foreign.read_bytes() == OLD


def test_extract_into_our_folder_resumes_and_guards_its_settings(capsys, tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    (folder / "Abuse001_x264.npy").write_bytes(OLD)
    manifest = {"backbone": "clip", "weights_sha256": "0" * 64, "crops": 1, "naming": "ucf", "clip_frame": "middle"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert check_extract_folder(folder, {"backbone": "clip", "crops": 1, "naming": "ucf"}) == folder  # resume
    refused(capsys, ["extract", str(tmp_path / "v.mp4"), "--backbone", "i3d", "--weights", str(tmp_path / "w.pt"),
                     "--out", str(folder)], folder / "manifest.json", "'backbone'", "'clip'", "'i3d'")
    refused(capsys, ["extract", str(tmp_path / "v.mp4"), "--backbone", "clip", "--weights", str(tmp_path / "w.pt"),
                     "--clip-frame", "mean", "--out", str(folder)], "'clip_frame'")
    # same settings: the folder passes, and the run goes on to load the weights (missing here)
    refused(capsys, ["extract", str(tmp_path / "v.mp4"), "--backbone", "clip", "--weights", str(tmp_path / "w.pt"),
                     "--out", str(folder)], tmp_path / "w.pt", "not found")
    assert (folder / "Abuse001_x264.npy").read_bytes() == OLD


def test_scorer_save_into_a_file_says_a_folder_was_expected(checkpoint, existing_file):
    from adplg.inference.scorer import load

    scorer = load(checkpoint, device="cpu")
    with pytest.raises(AdplgError) as info:
        scorer.save([], existing_file)
    message = str(info.value)
    assert f"{existing_file}: it is a file; expected a folder" in message, message
    assert existing_file.read_bytes() == OLD


def test_demo_test_watch_folders_refuse_foreign_files_unless_overwrite(capsys, tmp_path):
    from adplg.live.outputs import WatchOutputs

    missing = str(tmp_path / "missing.safetensors")
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "results.json").write_bytes(OLD)
    (mine / "alert-0001-0000001.00s.jpg").write_bytes(OLD)
    before = sorted(p.name for p in mine.rglob("*"))
    refused(capsys, ["test", "--model_file", missing, "--out", str(mine)], mine, "results.json", "overwrite")
    refused(capsys, ["demo", "--out", str(mine), "--steps", "3"], mine, mine / "data", "overwrite")
    with pytest.raises(AdplgError, match="alert-0001-0000001.00s.jpg"):
        WatchOutputs.check(None, None, mine, None)
    assert sorted(p.name for p in mine.rglob("*")) == before
    # --overwrite passes the folder: the next problem is reported instead
    refused(capsys, ["test", "--model_file", missing, "--out", str(mine), "--overwrite"], "missing.safetensors")
    refused(capsys, ["demo", "--out", str(mine), "--steps", "0", "--overwrite"], "num_iters")
    WatchOutputs.check(None, None, mine, None, overwrite=True)
    # a folder a watch filled is its own on the next run
    snaps = tmp_path / "snaps"
    WatchOutputs(None, None, snaps, None, "cam").close()
    (snaps / "alert-0001-0000001.00s.jpg").write_bytes(OLD)
    WatchOutputs.check(None, None, snaps, None)
