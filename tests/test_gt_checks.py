"""Issue 14, item 2: a test set whose GT is wrong is refused before anything is computed, with every problem named,
by the same checks ``adplg doctor`` runs (``gt_checks.check_test_gt``); the official annotations pass them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from adplg.cli.main import main
from adplg.config import build_config
from adplg.data.datasets import build_test_set
from adplg.data.gt import SnippetLayout
from adplg.data.gt_checks import GTVideo, check_test_gt
from adplg.data.lists import group_videos, read_list
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.doctor.checks import diagnose
from adplg.errors import AdplgError, DataValidationError
from adplg.evaluation.evaluate import evaluate
from adplg.evaluation.metrics import frame_metrics

realdata = pytest.mark.realdata


def _generate(root: Path):
    return generate_synthetic_ucf(root, num_train_normal=4, num_train_abnormal=4, num_test_normal=2,
                                  num_test_abnormal=2, max_snippets=60, seed=0)


@pytest.fixture()
def data(tmp_path):
    return _generate(tmp_path / "data")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-step run on clean synthetic data (its checkpoint scores any copy of that data)."""
    root = tmp_path_factory.mktemp("gtchecks")
    ds = _generate(root / "data")
    run = root / "run"
    assert main(["train", "--preset", "demo-cpu-small", "--run_dir", str(run), f"data.list_dir={ds.root}",
                 "train.num_iters=2", "train.warm_up=1", "train.batch_size=4", "train.progress=false",
                 f"output_dir={root}"]) == 0
    return run


def _abnormal_test_videos(ds):
    return [v for v in group_videos(read_list(ds.test_list, "ucf")) if v.label == 1]


def _num_snippets(video) -> int:
    return int(np.load(video.crops[0].path, mmap_mode="r").shape[0])


def _rewrite(ds, edit) -> None:
    """Apply ``edit(line) -> line | None`` (None drops the line) to every line of the annotation file."""
    lines = [edit(line) for line in ds.annotations.read_text().splitlines()]
    ds.annotations.write_text("\n".join(line for line in lines if line is not None) + "\n")


# the four corruptions: each returns the strings stderr must name (besides the annotation file)
def _set_interval(ds, video, start: int, end: int) -> None:
    """Give ``video`` the single anomaly interval ``[start, end]`` in the annotation file."""
    def edit(line):
        name, frames, cls = line.split()[:3]
        return f"{name} {frames} {cls} {start} {end} -1 -1" if video.name in name else line

    _rewrite(ds, edit)


def _beyond_end(ds) -> list[str]:
    video = _abnormal_test_videos(ds)[0]
    t = _num_snippets(video)
    _set_interval(ds, video, 16 * t + 100, 16 * t + 200)
    return [video.name, "beyond the video's end", f"[{16 * t + 100}, {16 * t + 200}]", f"[0, {16 * t}]"]


def _deleted_line(ds) -> list[str]:
    video = _abnormal_test_videos(ds)[1]
    _rewrite(ds, lambda line: None if video.name in line else line)
    return [video.name, "abnormal video has no line in annotation file"]


def _misspelt(ds, which: int = 0) -> list[str]:
    video = _abnormal_test_videos(ds)[which]
    typo = video.name.replace("_x264", "_x246")
    _rewrite(ds, lambda line: line.replace(video.name, typo))
    return [video.name, "abnormal video has no line in annotation file", f"annotates {typo!r}", "misspelt"]


def _only_normal_annotated(ds) -> list[str]:
    names = [v.name for v in _abnormal_test_videos(ds)]
    _rewrite(ds, lambda line: None if any(n in line for n in names) else line)
    return [*names, "no abnormal frame", "frame AUC/AP are undefined"]


CORRUPTIONS = {"beyond_end": _beyond_end, "deleted_line": _deleted_line, "misspelt": _misspelt,
               "only_normal_annotated": _only_normal_annotated}


def _train(ds, out: Path) -> int:
    """``adplg train``, 2 steps; warm_up=1 so that the last step evaluates (and a valid config)."""
    return main(["train", "--preset", "demo-cpu-small", f"data.list_dir={ds.root}", "train.num_iters=2",
                 "train.warm_up=1", "train.batch_size=4", "train.progress=false", f"output_dir={out}"])


def _test(ds, run: Path, out: Path) -> int:
    return main(["test", "--model_file", str(run), "--out", str(out), f"data.list_dir={ds.root}",
                 "train.progress=false"])


def _written(folder: Path) -> list[Path]:
    return [p for name in ("results.json", "scores.npz", "metrics.jsonl") for p in folder.rglob(name)]


# ------------------------------------------------------------------------------------------------ the commands
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_train_refuses_a_wrong_gt(corruption, data, tmp_path, capsys):
    expected = CORRUPTIONS[corruption](data)
    out = tmp_path / "runs"
    assert _train(data, out) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(data.annotations) in err
    for text in expected:
        assert text in err, text
    assert not out.exists() or not _written(out)


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_test_refuses_a_wrong_gt(corruption, data, run_dir, tmp_path, capsys):
    expected = CORRUPTIONS[corruption](data)
    out = tmp_path / "test"
    assert _test(data, run_dir, out) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(data.annotations) in err
    for text in expected:
        assert text in err, text
    assert not out.exists() or not _written(out)


def test_every_error_in_one_message(data, tmp_path, capsys):
    beyond, deleted = _beyond_end(data), _deleted_line(data)  # the two abnormal videos: no abnormal frame is left
    assert _train(data, tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert "test set ground truth" in err and "3 problem(s)" in err
    for text in (*beyond, *deleted, "no abnormal frame"):
        assert text in err, text


def test_clean_data_still_trains_and_tests(data, run_dir, tmp_path, caplog):
    out = tmp_path / "runs"
    with caplog.at_level(logging.WARNING, logger="adplg"):
        assert _train(data, out) == 0
        assert _test(data, run_dir, tmp_path / "test") == 0
    assert [p.name for p in _written(out) if p.name == "results.json"] == ["results.json"]
    assert (tmp_path / "test" / "results.json").is_file()
    assert not [r for r in caplog.records if "ground truth" in r.getMessage()]  # no GT warning either


# ---------------------------------------------------------------------------------- one mechanism, two callers
def _config(ds, *overrides: str):
    return build_config("demo-cpu-small", overrides=[f"data.list_dir={ds.root}", "train.batch_size=4", *overrides])


def test_build_test_set_raises_exactly_the_doctors_errors(data):
    _beyond_end(data)
    _misspelt(data, which=1)
    with pytest.raises(DataValidationError) as exc:
        build_test_set(_config(data), progress=False)
    split = diagnose(_config(data), splits=("test",), progress=False).splits[0]
    # both abnormal videos are broken, so no abnormal frame is left: the doctor warns about that (see
    # test_gt_file_without_abnormal_frames), building the test set refuses it with the same message
    refused = [p.message for p in split.problems if p.severity == "error" or p.kind == "one_class"]
    assert sorted(exc.value.problems) == sorted(refused)
    assert {p.kind for p in split.errors} == {"beyond_end", "unannotated"}
    assert sorted(p.kind for p in split.warnings) == ["not_in_list", "one_class"]


def test_warnings_are_logged_once_not_raised(data, caplog):
    extra = "Abuse/Abuse999_x264.mp4 1000 Abuse 10 20 -1 -1"
    data.annotations.write_text(data.annotations.read_text() + extra + "\n")
    with caplog.at_level(logging.WARNING, logger="adplg"):
        test = build_test_set(_config(data), progress=False)
    assert test.gt.num_abnormal > 0
    records = [r for r in caplog.records if "Abuse999_x264" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].name.startswith("adplg") and str(data.annotations) in records[0].getMessage()


def test_partial_last_snippet_is_not_a_problem(data, caplog):
    """Official annotations may end inside the partial snippet the features dropped (< 16 frames past 16 T)."""
    video = _abnormal_test_videos(data)[0]
    t = _num_snippets(video)
    _set_interval(data, video, 16 * t - 40, 16 * t + 15)
    with caplog.at_level(logging.WARNING, logger="adplg"):
        test = build_test_set(_config(data), progress=False)
    assert not caplog.records
    v = [x.name for x in test.videos].index(video.name)
    assert test.gt.video(v)[-40:].all() and len(test.gt.video(v)) == 16 * t  # clipped at the video's end


def test_gt_file_without_abnormal_frames(data, tmp_path):
    frames = diagnose(_config(data), splits=("test",), progress=False).splits[0].gt_frames
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros(frames, np.uint8))
    with pytest.raises(DataValidationError, match="no abnormal frame") as exc:
        build_test_set(_config(data, f"data.gt_file={zeros}"), progress=False)
    assert str(zeros) in str(exc.value) and f"all {frames} frames normal" in str(exc.value)
    # the doctor names it too, as a warning (the file itself is well formed)
    split = diagnose(_config(data, f"data.gt_file={zeros}"), splits=("test",), progress=False).splits[0]
    problems = [(p.kind, p.severity, p.message) for p in split.problems]
    assert problems == [("one_class", "warning", exc.value.problems[0])]


def test_gt_file_problems_listed_together(data, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full(100, 2, np.int64))
    with pytest.raises(DataValidationError) as exc:
        build_test_set(_config(data, f"data.gt_file={bad}"), progress=False)
    assert len(exc.value.problems) == 2
    assert "expected 0/1 frame labels" in str(exc.value) and "got 100" in str(exc.value)


def test_check_test_gt_reports_without_raising():
    videos = [GTVideo(name="Abuse001_x264", label=1, snippets=10, path="/f/Abuse001_x264.npy"),
              GTVideo(name="Normal_Videos001_x264", label=0, snippets=5)]
    check = check_test_gt(videos, gt_file=None, annotations=None)
    assert [p.kind for p in check.problems] == ["gt"] and check.gt is None
    with pytest.raises(DataValidationError, match="both unset"):
        check.raise_errors()
    spread = check_test_gt(videos, SnippetLayout(kind="spread"), annotations="x.txt")
    assert not spread.problems and spread.gt is None and "skipped" in spread.notes[0]


# ---------------------------------------------------------------------------------------------------- metrics
def test_metrics_refuse_a_single_class_gt():
    with pytest.raises(AdplgError, match="all 10 frames normal"):
        frame_metrics(np.zeros(10), np.linspace(0, 1, 10), single_class="raise")
    with pytest.raises(AdplgError, match="all 4 frames abnormal"):
        frame_metrics(np.ones(4), np.linspace(0, 1, 4), single_class="raise")
    with pytest.raises(AdplgError, match="single_class"):
        frame_metrics(np.array([0, 1]), np.array([0.1, 0.9]), single_class="maybe")
    assert frame_metrics(np.array([0, 1]), np.array([0.1, 0.9]), single_class="raise")["auc"] == 1.0


def test_evaluate_refuses_before_scoring(data):
    test = build_test_set(_config(data), progress=False)
    test.gt.labels[:] = 0  # a test set built without the checks (by hand, or another loader)

    class Boom(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("scored a test set without abnormal frames")

    with pytest.raises(AdplgError, match="no frames|all .* frames normal"):
        evaluate(Boom(), test)


# ---------------------------------------------------------------------------------------- the official files
@realdata
@pytest.mark.parametrize("fmt, list_name, annotations, reference", [
    ("ucf", "UCF_Test.list", "UCF_Annotation.txt", "ucf/pel4vad_ucf_test_gt_per_video.npz"),
    ("xd", "XD_Test.list", "XD_annotations.txt", "xd/pel4vad_xd_test_gt_per_video.npz"),
])
def test_official_annotations_pass(label_npz, official_lists, fmt, list_name, annotations, reference):
    """With the official feature lengths (PEL4VAD's per-video GT, 16 frames per snippet) the official UCF and XD
    annotations give neither errors nor warnings, and the checked GT equals the reference."""
    ref = label_npz(reference)
    videos = group_videos(read_list(official_lists / list_name, fmt))
    gt_videos = [GTVideo(name=v.name, label=v.label, snippets=len(ref[v.name]) // 16,
                         path=str(v.crops[0].path)) for v in videos]
    check = check_test_gt(gt_videos, annotations=official_lists / annotations, annotation_format=fmt,
                          list_file=official_lists / list_name)
    assert check.problems == []
    assert all(np.array_equal(check.gt.video(i), ref[v.name]) for i, v in enumerate(videos))
    # one interval moved past the end is an error naming the file and the video
    broken = {v.name: v for v in gt_videos}
    first = gt_videos[0]
    broken[first.name] = GTVideo(name=first.name, label=first.label, snippets=2, path=first.path)
    check = check_test_gt(list(broken.values()), annotations=official_lists / annotations, annotation_format=fmt,
                          list_file=official_lists / list_name)
    assert {p.kind for p in check.errors} == {"beyond_end"} and first.name in check.errors[0].message


@realdata
def test_official_sht_gt_file_passes(official_lists):
    path = official_lists / "sh-gt.npy"
    names = [v.name for v in group_videos(read_list(official_lists / "SHT_Test.list", "sht"))]
    snippets = [44] * len(names)
    snippets[0] += 1  # a partition of the 8,757 snippets (140,112 frames / 16), as in test_gt.py
    check = check_test_gt([GTVideo(name=n, label=-1, snippets=t) for n, t in zip(names, snippets)], gt_file=path)
    assert check.problems == [] and len(check.gt) == 140_112 and check.gt.num_abnormal == 7_874
