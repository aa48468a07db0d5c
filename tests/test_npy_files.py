"""Issue 26 (item 7): a damaged .npy file is described (expected vs got, naming the file) without numpy's advice to
load it "unsafely" with allow_pickle."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from adplg.data.features import check_feature_file
from adplg.data.gt import read_gt_array
from adplg.data.lists import CropItem
from adplg.data.npy_files import npy_failure_reason, npy_problem, npy_size_problem, numpy_reason
from adplg.errors import AdplgError

D = 8


def good_bytes() -> bytes:
    """A valid .npy file of shape (5, D), float32, as bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((5, D), np.float32))
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def damaged_files(tmp_path: Path) -> dict[str, tuple[Path, str, str]]:
    """Name -> (file, expected problem kind, expected text)."""
    good = good_bytes()
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    npz = tmp_path / "archive.npy"
    with open(npz, "wb") as handle:
        np.savez(handle, x=np.zeros(3))
    huge_header = bytearray(good[:8]) + (20000).to_bytes(2, "little") + b" " * 100
    huge_header[6:8] = b"\x01\x00"
    return {
        "text": (write(tmp_path / "text.npy", b"hello, this is not an array\n"), "unreadable",
                 r"not a .npy file: expected a .npy header starting with b'\x93NUMPY', got b'hello, t'"),
        "empty": (write(tmp_path / "empty.npy", b""), "unreadable",
                  r"not a .npy file: expected a .npy header starting with b'\x93NUMPY', got an empty file"),
        "objects": (objects, "dtype", "wrong dtype: expected a numeric array, got an array of Python objects "
                                      "(dtype object, shape (2,)), which is never read"),
        "version": (write(tmp_path / "version.npy", good[:6] + b"\x09\x00" + good[8:]), "unreadable",
                    "unsupported .npy format: expected version 1.0, 2.0 or 3.0, got 9.0"),
        "header": (write(tmp_path / "header.npy", good[:20]), "unreadable",
                   "corrupt .npy header: expected a dict with descr, fortran_order and shape, got an unreadable one"),
        "garbled": (write(tmp_path / "garbled.npy", good[:10] + b"{'descr': ?" + good[21:]), "unreadable",
                    "corrupt .npy header"),
        "huge_header": (write(tmp_path / "huge_header.npy", bytes(huge_header)), "unreadable",
                        "corrupt .npy header"),
        "data": (write(tmp_path / "data.npy", good[:-4]), "truncated",
                 f"truncated, cannot be read as a .npy array: expected {len(good)} bytes (header: shape (5, {D}), "
                 f"float32), got {len(good) - 4}"),
        "npz": (npz, "unreadable", "expected a .npy array, got an .npz archive"),
    }


UNSAFE_WORDS = ("allow_pickle", "unsafe", "pickle.load", "trust")


def test_npy_problem_names_each_kind_of_damage(tmp_path):
    for name, (path, kind, text) in damaged_files(tmp_path).items():
        problem = npy_problem(path)
        assert problem is not None, name
        assert problem.kind == kind, name
        assert text in problem.reason, (name, problem.reason)
        assert not any(word in problem.reason.lower() for word in UNSAFE_WORDS), (name, problem.reason)
    assert npy_problem(write(tmp_path / "good.npy", good_bytes())) is None


def test_npy_size_problem_keeps_its_contract(tmp_path):
    files = damaged_files(tmp_path)
    assert npy_size_problem(files["data"][0]).startswith(f"{files['data'][0]}: truncated")
    assert npy_size_problem(files["text"][0]) is None
    assert npy_size_problem(write(tmp_path / "good.npy", good_bytes())) is None


def test_numpy_advice_is_dropped_but_the_reason_kept():
    advice = ValueError("This file contains pickled (object) data. If you trust the file you can load it unsafely "
                        "using the `allow_pickle=` keyword argument or `pickle.load()`.")
    assert numpy_reason(advice) == "This file contains pickled (object) data."
    assert numpy_reason(ValueError("Object arrays cannot be loaded when allow_pickle=False")) == "no details"
    assert numpy_reason(ValueError("EOF: reading array header")) == "EOF: reading array header"


def test_feature_checks_report_damage_without_unsafe_advice(tmp_path):
    for name, (path, kind, text) in damaged_files(tmp_path).items():
        items = [CropItem(path=path, video=name, crop=0, label=0, history_key=name)]
        check = check_feature_file(path, items, feature_dim=D)
        assert [problem.kind for problem in check.problems] == [kind], name
        message = check.problems[0].message
        assert message.startswith(f"{path}: ") and text in message, (name, message)
        assert not any(word in message.lower() for word in UNSAFE_WORDS), (name, message)


@pytest.mark.parametrize("name", ["text", "objects", "version"])
def test_gt_files_report_damage_without_unsafe_advice(tmp_path, name):
    path, _, text = damaged_files(tmp_path)[name]
    with pytest.raises(AdplgError) as info:
        read_gt_array(path)
    message = str(info.value)
    assert f"GT file {path}" in message and text in message
    assert not any(word in message.lower() for word in UNSAFE_WORDS)


def test_failure_reason_falls_back_to_the_exception(tmp_path):
    good = write(tmp_path / "good.npy", good_bytes())
    reason = npy_failure_reason(good, ValueError("odd failure. Load it unsafely with allow_pickle=True."))
    assert reason == "ValueError: odd failure."
    assert npy_failure_reason(tmp_path / "gone.npy", FileNotFoundError("gone")) == "FileNotFoundError: gone"


@pytest.mark.parametrize("name", ["text", "objects", "garbled"])
def test_score_reports_a_damaged_feature_file_without_unsafe_advice(tmp_path, capsys, tiny_checkpoint, name):
    from adplg.cli.main import main

    checkpoint, _ = tiny_checkpoint(64)
    damaged, _, text = damaged_files(tmp_path)[name]
    features = tmp_path / "features"
    features.mkdir()
    (features / "clip.npy").write_bytes(damaged.read_bytes())
    code = main(["score", str(features), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "scores"),
                 "--no-plot", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "adplg: error:" in err
    assert str(features / "clip.npy") in err and text in err
    assert not any(word in err.lower() for word in UNSAFE_WORDS), err
