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
            "train.progress=false", "train.batch_size=4"]


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
    arr = np.load(files[4]); arr[3, 5] = np.nan; np.save(files[4], arr)  # NaN
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
