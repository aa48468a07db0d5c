"""``--engine ray`` on a real local Ray cluster (``ray.init(num_cpus=2)``, one per module): extraction and scoring
give the local executor's files, a second run does nothing, a run killed part-way finishes on a re-run without
redoing anything, a corrupt video is recorded while the rest is done, and bad engine options are clear errors.

Videos are tiny synthetic clips, the backbone a one-layer random CLIP tower in the public checkpoint layout. Torch's
CPU kernels reduce in an order that depends on the thread count, so the local references run with one thread, as
each one-CPU Ray worker does."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from backbone_weights import write_random_clip
from media import write_video
from shared_helpers import assert_same_extraction, free_port, untrained_checkpoint

ray = pytest.importorskip("ray", reason="the Ray engine tests need `pip install adplg[ray]`")
pytest.importorskip("ray.data", reason="the Ray engine tests need Ray Data (`pip install adplg[ray]`)")

from adplg.cli.main import main  # noqa: E402
from adplg.engines import RayEngine, check_reachable  # noqa: E402
from adplg.errors import AdplgError  # noqa: E402
from adplg.features.extract import extract_many, plan_extraction  # noqa: E402
from adplg.features.extractors import build_extractor  # noqa: E402
from adplg.inference.jobs import score_many  # noqa: E402
from adplg.inference.scorer import load  # noqa: E402

GOOD = {"Abuse001_x264": 40, "Arson002_x264": 56, "Burglary003_x264": 34, "Normal_Videos004_x264": 64}  # frames
BROKEN = "Broken005_x264"


@contextmanager
def one_thread():
    """Run torch with one thread, like a one-CPU Ray worker (bit-identical CPU results need the same thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for the whole module; its GCS address (host:port)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four small videos and one corrupt file (random bytes named .mp4)."""
    root = tmp_path_factory.mktemp("corpus")
    for seed, (name, frames) in enumerate(GOOD.items()):
        write_video(root / f"{name}.mp4", frames, seed=seed)
    (root / f"{BROKEN}.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_random_clip(tmp_path_factory.mktemp("w") / "ViT-B-16.pt", seed=0, width=32, layers=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained small scoring model for 512-d (CLIP) features, one test crop, with non-trivial weights."""
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt"),
                                ["data.feature_dim=512", "data.test_crops=1", "model.max_len=64"])


@pytest.fixture(scope="module")
def extractor(weights):
    return build_extractor("clip", weights, crops=5, device="cpu")


@pytest.fixture(scope="module")
def local_features(corpus, extractor, tmp_path_factory) -> Path:
    """The local executor's extraction of the corpus (the reference)."""
    out = tmp_path_factory.mktemp("local") / "feats"
    with one_thread():
        report = extract_many(corpus, extractor, out, progress=False)
    assert report.done == sorted(GOOD) and [Path(v).stem for v, _ in report.failed] == [BROKEN]
    return out


def _mtimes(folder: Path, rewritten: tuple[str, ...]) -> dict[str, int]:
    """Modification times of the files of ``folder`` but the lists every run rewrites (``rewritten``)."""
    files = (p for p in folder.rglob("*") if p.is_file() and p.name not in rewritten)
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in files}


# ------------------------------------------------------------------------------------------------------- extraction
def test_ray_extraction_equals_local_records_the_corrupt_video_and_reruns_nothing(cluster, corpus, extractor,
                                                                                   local_features, tmp_path):
    out = tmp_path / "feats"
    with warnings.catch_warnings(record=True) as raised:  # issue 25 (9): adplg calls Ray's current API only
        warnings.simplefilter("always")
        report = extract_many(corpus, extractor, out, progress=False, engine=RayEngine(workers=2))
    ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in raised
            if "deprecat" in f"{w.category.__name__} {w.message}".lower() and "/adplg/" in w.filename]
    assert not ours, ours
    assert report.done == sorted(GOOD) and not report.skipped and report.snippets == sum(f // 16 for f in GOOD.values())
    assert [Path(v).name for v, _ in report.failed] == [f"{BROKEN}.mp4"]
    assert "cannot be opened as a video" in report.failed[0][1]
    assert_same_extraction(out, local_features, videos=len(GOOD), crops=5)

    # a second run: every finished video is skipped (only the corrupt one is left to try again), nothing rewritten
    plan = plan_extraction(corpus, extractor, out)
    assert plan.skipped == sorted(GOOD) and [v.stem for v in plan.todo] == [BROKEN]
    before, listed = _mtimes(out, ("features.list",)), (out / "features.list").read_text()
    again = extract_many([corpus / f"{n}.mp4" for n in GOOD], extractor, out, progress=False,
                         engine=RayEngine(workers=2))
    assert again.skipped == sorted(GOOD) and not again.done and not again.failed
    assert _mtimes(out, ("features.list",)) == before and (out / "features.list").read_text() == listed


def test_a_killed_ray_run_finishes_on_a_rerun_without_redoing_anything(cluster, corpus, extractor, weights,
                                                                       local_features, tmp_path):
    out = tmp_path / "feats"
    videos = [str(corpus / f"{name}.mp4") for name in GOOD]
    command = [sys.executable, "-m", "adplg.cli.main", "extract", *videos, "--backbone", "clip", "--weights",
               str(weights), "--crops", "5", "--out", str(out), "--device", "cpu", "--quiet", "--engine", "ray",
               "--address", cluster, "--workers", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list((out / "meta").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[0][-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60  # Ray ends the dead driver's worker: its CPU comes back
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    finished = {p.stem for p in (out / "meta").glob("*.json")}
    assert finished and finished < set(GOOD), finished  # killed part-way

    rerun = extract_many(videos, extractor, out, progress=False, engine=RayEngine(workers=2))
    assert not set(rerun.done) & finished, "a video finished before the kill was extracted again"
    assert set(rerun.skipped) >= finished and sorted(rerun.done + rerun.skipped) == sorted(GOOD)
    assert not rerun.failed
    assert_same_extraction(out, local_features, videos=len(GOOD), crops=5)


def test_an_item_that_keeps_killing_its_worker_is_given_up_and_the_others_are_done(cluster, tmp_path):
    """A worker process that dies on an item is restarted and the item tried again, TASK_RETRIES times; then the
    item gives no record (its caller reports it) and the other items are done."""
    from adplg.engines import TASK_RETRIES

    tries = tmp_path / "tries.txt"

    def setup(device):
        def work(item):
            if item["video"] == "poison":
                with tries.open("a") as log:
                    log.write("tried\n")
                os._exit(1)  # the process dies, as when killed for its memory
            return {"video": item["video"], "device": device}

        return work

    items = [{"video": name} for name in ("a", "poison", "b")]
    records = list(RayEngine(workers=1).map(items, setup))
    assert sorted(record["video"] for record in records) == ["a", "b"]
    assert {record["device"] for record in records} == {"cpu"}
    assert tries.read_text().count("tried") == TASK_RETRIES + 1


# ---------------------------------------------------------------------------------------------------- bad options

def test_unreachable_address_and_bad_engine_options_are_clear_errors(corpus, weights, tmp_path, capsys):
    base = ["extract", str(corpus), "--backbone", "clip", "--weights", str(weights), "--out", str(tmp_path / "o"),
            "--quiet"]
    address = f"127.0.0.1:{free_port()}"
    start = time.perf_counter()
    assert main([*base, "--engine", "ray", "--address", address]) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert f"--address: no Ray cluster reachable at {address}" in err and "ray start --head" in err
    assert not (tmp_path / "o").exists()  # refused before anything was written

    with socket.socket() as silent:  # a port that accepts connections but is no Ray head (no gRPC handshake)
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(AdplgError, match="accepts connections but does not answer as a gRPC server"):
            check_reachable(f"127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)

    for flags, message in ((["--engine", "ray", "--workers", "0"], "--workers: expected an integer >= 1, got 0"),
                           (["--engine", "ray", "--gpus-per-worker", "-1"],
                            "--gpus-per-worker: expected a number >= 0, got -1.0"),
                           (["--engine", "ray", "--cpus-per-worker", "0"],
                            "--cpus-per-worker: expected a number > 0, got 0.0"),
                           (["--workers", "2"], "--workers: expected together with --engine ray, got --engine local"),
                           (["--engine", "ray", "--address", "head node"], "--address: expected host:port")):
        assert main([*base, *flags]) == 2, flags
        assert message in capsys.readouterr().err, flags
    with pytest.raises(AdplgError, match="^workers: expected an integer >= 1, got 1.5"):  # the parameter's name
        RayEngine(workers=1.5)


# ---------------------------------------------------------------------------------------------------------- scoring
def test_score_jobs_skip_scored_videos_and_redo_changed_ones(checkpoint, tmp_path):
    """The engine-neutral scoring jobs, on the local engine: the outputs of `adplg score` (plus the fingerprint);
    a re-run skips everything; new rules redo every video, a rewritten feature file only its video."""
    folder = tmp_path / "features"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, snippets in (("cam1", 30), ("cam2", 12), ("cam3", 90)):  # cam3: longer than max_len, in windows
        np.save(folder / f"{name}.npy", rng.normal(size=(snippets, 512)).astype(np.float32))
    scorer = load(checkpoint, device="cpu")
    classic, jobs = tmp_path / "classic", tmp_path / "jobs"
    scorer.save(scorer.score(folder, fps=25), classic, plot=False)
    report = score_many(scorer, folder, jobs, fps=25, plot=False)
    names = sorted(p.stem for p in classic.glob("*.csv"))
    assert report.done == names == ["cam1", "cam2", "cam3"] and not report.failed
    for name in names:
        assert (jobs / f"{name}.csv").read_bytes() == (classic / f"{name}.csv").read_bytes()
        record = json.loads((jobs / f"{name}.json").read_text())
        assert len(record.pop("score_fingerprint")) == 64
        assert record == json.loads((classic / f"{name}.json").read_text()), name
    assert json.loads((jobs / "summary.json").read_text()) == json.loads((classic / "summary.json").read_text())

    summary = (jobs / "summary.json").read_bytes()
    again = score_many(scorer, folder, jobs, fps=25, plot=False)
    assert again.skipped == names and not again.done and (jobs / "summary.json").read_bytes() == summary

    from adplg.alert_rules import AlertRules

    assert score_many(scorer, folder, jobs, fps=25, plot=False, rules=AlertRules(on_threshold=0.3)).done == names
    changed = sorted(folder.glob("*.npy"))[0]
    np.save(changed, np.load(changed))  # rewritten (same values): its video is scored again, only it
    redo = score_many(scorer, folder, jobs, fps=25, plot=False, rules=AlertRules(on_threshold=0.3))
    assert len(redo.done) == 1 and changed.stem.startswith(redo.done[0]) and len(redo.skipped) == len(names) - 1


def test_ray_scoring_of_videos_equals_local_score(cluster, corpus, weights, checkpoint, tmp_path, capsys):
    videos = [str(corpus / f"{name}.mp4") for name in GOOD]
    local = tmp_path / "local"
    with one_thread():
        assert main(["score", *videos, "--checkpoint", str(checkpoint), "--weights", str(weights), "--out",
                     str(local), "--device", "cpu", "--quiet"]) == 0
    out = tmp_path / "ray"
    command = ["score", str(corpus), "--checkpoint", str(checkpoint), "--weights", str(weights), "--out", str(out),
               "--quiet", "--engine", "ray", "--workers", "2"]
    assert main(command) == 1  # the corrupt video failed, the others were scored
    captured = capsys.readouterr()
    assert "scored 4 video(s), skipped 0 scored already, 1 failed" in captured.out
    assert f"{BROKEN}.mp4" in captured.err and "cannot be opened as a video" in captured.err

    for name in GOOD:
        assert (out / f"{name}.csv").read_bytes() == (local / f"{name}.csv").read_bytes(), name
        record = json.loads((out / f"{name}.json").read_text().replace(str(out), "<out>"))
        reference = json.loads((local / f"{name}.json").read_text().replace(str(local), "<out>"))
        assert record.pop("score_fingerprint") == reference.pop("score_fingerprint") and record == reference, name
        assert (out / f"{name}.png").is_file()
        features = f"features/{name}.npy"  # the checkpoint's one test crop
        assert np.array_equal(np.load(out / features), np.load(local / features)), name
    summary, reference = (json.loads((f / "summary.json").read_text()) for f in (out, local))
    assert summary["videos"] == reference["videos"] and summary["alert_rules"] == reference["alert_rules"]
    assert not (out / f"{BROKEN}.csv").exists()

    before = _mtimes(out, ("summary.json", "features.list"))
    assert main(["score", *videos, *command[2:]]) == 0  # a second run: everything scored already, nothing redone
    assert "scored 0 video(s), skipped 4 scored already, 0 failed" in capsys.readouterr().out
    assert _mtimes(out, ("summary.json", "features.list")) == before
    assert json.loads((out / "summary.json").read_text())["videos"] == summary["videos"]
