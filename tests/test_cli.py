"""Bad inputs: one clear message naming the problem, a non-zero exit, no traceback."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adplg.cli.main import main
from adplg.data.synthetic import generate_synthetic_ucf


@pytest.fixture()
def data(tmp_path):
    return generate_synthetic_ucf(tmp_path / "data", num_train_normal=4, num_train_abnormal=4, num_test_normal=2,
                                  num_test_abnormal=2, max_snippets=80, seed=0)


def run(capsys, *args):
    code = main(["train", "--preset", "demo-cpu-small", *args])
    err = capsys.readouterr().err
    return code, err


def first_test_file(data, suffix=".npy"):
    return Path(data.test_list.read_text().split()[0])


def common(data, tmp_path):
    return [f"data.list_dir={data.root}", f"output_dir={tmp_path / 'runs'}", "train.num_iters=2",
            "train.warm_up=1", "train.progress=false", "train.batch_size=4"]


def test_unknown_preset(capsys):
    code = main(["train", "--preset", "ucf-i3d-typo"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown preset 'ucf-i3d-typo'" in err and "Traceback" not in err


def test_missing_list_dir(capsys, tmp_path):
    code, err = run(capsys, f"data.list_dir={tmp_path / 'nowhere'}")
    assert code == 2 and "nowhere" in err and "Traceback" not in err


def test_missing_and_truncated_and_nan_and_wrong_dim_reported_together(capsys, data, tmp_path):
    files = [Path(p) for p in data.test_list.read_text().split()]
    files[0].unlink()  # missing
    raw = files[2].read_bytes()
    files[2].write_bytes(raw[: len(raw) // 2])  # truncated
    arr = np.load(files[4])
    arr[3, 5] = np.nan  # NaN
    np.save(files[4], arr)
    np.save(files[6], np.zeros((10, 7), np.float32))  # wrong feature dimension
    code, err = run(capsys, *common(data, tmp_path))
    assert code == 2 and "Traceback" not in err
    for f in (files[0], files[2], files[4], files[6]):
        assert str(f) in err, f
    assert "64" in err and "7" in err  # expected and actual dimension


def test_gt_length_mismatch(capsys, data, tmp_path):
    gt = tmp_path / "short-gt.npy"
    np.save(gt, np.zeros(100, np.float32))
    code, err = run(capsys, *common(data, tmp_path), f"data.gt_file={gt}")
    assert code == 2 and str(gt) in err and "100" in err and "Traceback" not in err


def test_model_file_not_found(capsys, tmp_path):
    code = main(["test", "--preset", "ucf-i3d", "--model_file", str(tmp_path / "none.pkl")])
    err = capsys.readouterr().err
    assert code == 2 and "none.pkl" in err


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "adplg.cli.main", "train", "--preset", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown preset" in proc.stderr and "Traceback" not in proc.stderr


def test_test_command_accepts_an_official_pkl(tmp_path, capsys):
    """An authors'-layout ``*_model_s_*.pkl`` scores exactly like the module it was made from."""
    import torch

    from adplg.models import SnippetBranch
    from adplg.models.convert import _NET_S_MAP

    data = generate_synthetic_ucf(tmp_path / "d", num_train_normal=2, num_train_abnormal=2, num_test_normal=2,
                                  num_test_abnormal=2, feature_dim=1024, crops=2, max_snippets=40, seed=3)
    torch.manual_seed(0)
    model = SnippetBranch(in_dim=1024).eval()
    ours = model.state_dict()
    official = {key: ours[our_key].reshape(shape).clone() for key, (our_key, shape) in _NET_S_MAP.items()}
    pkl = tmp_path / "ucf_model_s_test.pkl"
    torch.save(official, pkl)
    out = tmp_path / "result"
    code = main(["test", "--preset", "ucf-i3d", "--model_file", str(pkl), "--out", str(out),
                 f"data.list_dir={data.root}", "data.test_crops=2", "train.progress=false"])
    assert code == 0, capsys.readouterr().err
    scores = np.load(out / "scores.npz")
    first = data.test_list.read_text().split()[:2]
    with torch.no_grad():
        expected = model(torch.from_numpy(np.stack([np.load(f) for f in first]))).mean(0).numpy()
    name = Path(first[0]).stem
    np.testing.assert_allclose(scores[name], expected, atol=1e-6)


def test_official_scripts_are_thin_wrappers(tmp_path):
    for script in ("ucf_main.py", "xd_main.py", "sht_main.py", "ucf_test.py", "xd_test.py", "sht_test.py"):
        proc = subprocess.run([sys.executable, str(Path(__file__).parents[1] / script), "--help"],
                              capture_output=True, text=True)
        assert proc.returncode == 0 and "--thre_pesudo_a" in proc.stdout, script
    proc = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "xd_main.py"), "--thre_pesudo_a", "0.15",
                           "--thre_var_a", "0.5", "--pl_his_num", "5", "--warm_up", "1500",
                           "--list_dir", str(tmp_path / "missing-list")], capture_output=True, text=True)
    assert proc.returncode == 2 and "missing-list" in proc.stderr and "XD_Train.list" in proc.stderr


@pytest.mark.parametrize("command", ["train", "test", "demo", "extract", "score", "calibrate", "export", "doctor"])
def test_every_command_is_registered_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- issue 9, point 6
def test_both_flag_spellings_everywhere(capsys, data, tmp_path):
    """``--num_iters`` and ``--num-iters`` are the same option in every command."""
    from adplg.cli.common import normalize_spellings
    from adplg.cli.main import build_parser

    parser = build_parser()
    assert normalize_spellings(parser, ["train", "--num-iters", "3", "--list-dir=x"]) == [
        "train", "--num_iters", "3", "--list_dir=x"]
    assert normalize_spellings(parser, ["score", "f.npy", "--no_plot", "--min_duration", "2"]) == [
        "score", "f.npy", "--no-plot", "--min-duration", "2"]
    assert normalize_spellings(parser, ["score", "--no_such_flag"]) == ["score", "--no_such_flag"]
    code, err = run(capsys, "--list-dir", str(data.root), f"output_dir={tmp_path / 'runs'}", "--num-iters", "2",
                    "--warm-up", "1", "train.progress=false", "train.batch_size=4")
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "num_iters: 2" in (run_dir / "config.yaml").read_text()


def test_version(capsys):
    import adplg

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and adplg.__version__ in capsys.readouterr().out


def test_config_lists_every_key_with_the_presets_value(capsys):
    assert main(["config", "--preset", "xd-i3d"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith("#")}
    assert "0.15" in lines["plg.mean_threshold"] and "5" in lines["plg.history"].split()[1]
    assert {"train.num_iters", "data.layout.kind", "model.windows", "eval.smooth_window"} <= set(lines)


def test_test_on_a_run_folder_writes_inside_the_run_with_a_plot(tiny_checkpoint, capsys):
    checkpoint, data = tiny_checkpoint(64)
    run_dir = checkpoint.parent.parent
    assert main(["test", "--model_file", str(run_dir), f"data.list_dir={data.root}", "train.progress=false"]) == 0
    out = run_dir / "tests" / "last"
    assert (out / "results.json").is_file() and (out / "scores.npz").is_file() and (out / "scores.png").is_file()
    assert str(out) in capsys.readouterr().out


def test_a_missing_video_says_video_not_found(tiny_checkpoint, tmp_path, capsys):
    checkpoint, _ = tiny_checkpoint(64)
    assert main(["score", str(tmp_path / "cam1.mp4"), "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "video not found" in err and "cam1.mp4" in err and "feature" not in err


# ------------------------------------------------------------------------------------------- issue 25, point 8
def test_presets_table_has_a_header_and_aligned_labelled_columns(capsys):
    from adplg.cli.main import PRESET_COLUMNS
    from adplg.preset_files import preset_names

    assert main(["presets"]) == 0
    table = capsys.readouterr().out.split("\n\n")[0]  # then what the improved presets change (test_presets_improved)
    header, *rows = table.splitlines()
    assert header.split() == ["preset", "format", "feature_dim", "crops", "train/test",
                              "thre_pesudo_a/thre_var_a/pl_his_num/warm_up", "description"]
    assert [row.split()[0] for row in rows] == preset_names()
    for label in PRESET_COLUMNS[1:]:  # every column starts where its label does, in every row
        start = header.index(label)
        assert all(row[start - 2:start] == "  " and row[start] != " " for row in rows), label
    xd = next(row for row in rows if row.startswith("xd-i3d "))
    assert xd.split()[1:5] == ["xd", "1024", "5/5", "0.15/0.5/5/1500"]


def test_official_scripts_help_names_the_script_and_its_preset():
    for script, preset in (("xd_main.py", "xd-i3d"), ("ucf_test.py", "ucf-i3d"), ("sht_main.py", "sht-i3d")):
        proc = subprocess.run([sys.executable, str(Path(__file__).parents[1] / script), "--help"],
                              capture_output=True, text=True)
        text = " ".join(proc.stdout.split())  # argparse wraps long help lines
        assert proc.returncode == 0 and text.startswith(f"usage: python {script} "), (script, proc.stdout[:200])
        assert f"default {preset}" in text and "adplg train" not in text.split("The official")[0], script


def test_test_help_lists_only_what_test_uses(capsys):
    with pytest.raises(SystemExit):
        main(["test", "--help"])
    out = capsys.readouterr().out
    for flag in ("--model_file", "--preset", "--config", "--feature_root", "--list_dir", "--device", "--out",
                 "--no_plot"):
        assert flag in out, flag
    for flag in ("--thre_pesudo_a", "--thre_var_a", "--pl_his_num", "--warm_up", "--seed", "--batch_size",
                 "--num_iters", "--output_dir", "--run_dir", "--resume"):
        assert flag not in out, flag
    with pytest.raises(SystemExit) as exc:  # not an option of test
        main(["test", "--model_file", "x.safetensors", "--seed", "1"])
    assert exc.value.code == 2 and "unrecognized arguments: --seed" in capsys.readouterr().err
