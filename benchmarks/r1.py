"""The R1 benchmark: real UCF-Crime I3D logits (../shared/docs/BENCHMARKS.md), several seeds, side by side with a
per-snippet logistic regression on the same data. Reads the data in place; exits cleanly when it is absent.

    python benchmarks/r1.py --preset r1-cpu-small --seeds 0 1 2             # CPU-sized model
    python benchmarks/r1.py train.device=cuda --preset r1-faithful --seeds 42 1 2   # overrides go first
    python benchmarks/r1.py --preset r1-cpu-small --seeds 0 --write docs/benchmarks.md
    python benchmarks/r1.py --preset r1-cpu-small --seeds 0 1 2 --json r1.json   # per-seed results for scripts

Reported per seed: the last evaluation (no selection), the validation-selected one when train.val_fraction > 0
(held-out *training* videos, video labels only), and best-on-test, labelled as such (never a result). ``--json`` adds
the time to detect at 1% and 5% false-alarm rate (adplg.evaluation.detection) of the last evaluation's scores, and of
the ensembles' mean raw scores (the scores their AUC is of).
On the CPU the seeds train side by side, one process per seed up to the number of cores (``--jobs``); on the 2-core
development machine ``--preset r1-improved --seeds 0 1 2 3 4`` took 15-16 minutes that way, about 21 in one process.

Reproducibility across machines: the machine block printed first (CPU model, torch's kernel level, BLAS, threads,
the MKL/oneDNN environment) and, per seed, checksums of the training losses of the first 1, 10 and 100 steps
(sha256 of their float32 values). Two machines with the same checksums ran bit-identical steps so far; the first
checksum that differs tells where the runs diverged (float rounding differences then grow over training).
``--pin-numerics`` reruns the script with MKL's and oneDNN's code paths pinned to AVX2 (``MKL_CBWR=AVX2,STRICT``,
``ONEDNN_MAX_CPU_ISA=AVX2``) and one thread, the settings that made the runs differ on one machine (docs/benchmarks.md,
"Reproducibility across machines"); whether that makes two different x86 CPUs agree is not verified.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adplg.baselines import MIL_STEPS
from adplg.checkpoints.format import Checkpoint, checkpoint_file
from adplg.config import build_config
from adplg.data.r1 import R1_FOLDER, load_r1
from adplg.demo import baseline_metrics, mil_metrics
from adplg.errors import AdplgError
from adplg.evaluation.detection import describe, detection_on_test_set
from adplg.evaluation.evaluate import predict_snippet_scores, score_metrics
from adplg.io import atomic_write_text
from adplg.runtime import resolve_device, versions
from adplg.training.engine import Trainer, create_run_dir

REPO = Path(__file__).resolve().parents[1]
CHECKSUM_STEPS = (1, 10, 100)
PINNED_NUMERICS = {"MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}


def shared_dir() -> Path:
    return Path(os.environ.get("ADPLG_SHARED", REPO.parent / "shared"))


def train_seed(preset: str, overrides: list[str], seed: int, train, test, out: Path) -> tuple[Trainer, dict]:
    """Train ``preset`` (with ``overrides``) at ``seed`` on R1; returns the trainer and its summary with the loss
    checksums, time, history and device."""
    cfg = build_config(preset, overrides=[f"train.seed={seed}", f"output_dir={out}", *overrides])
    start = time.time()
    trainer = Trainer(cfg, train, test, create_run_dir(cfg))
    trace = record_losses(trainer, max(CHECKSUM_STEPS))
    summary = trainer.fit()
    summary["loss_trace"] = trace
    summary["loss_checksums"] = loss_checksums(trace)
    summary["seconds"] = time.time() - start
    summary["history"] = trainer.history
    summary["device"] = str(trainer.device)
    return trainer, summary


def last_eval_scores(trainer: Trainer, test) -> list[np.ndarray]:
    """Per test video, the snippet scores ``[T_v]`` of the trainer's last evaluation (its ``scores.npz``: the scores
    behind ``summary["last"]``, smoothed as the config says)."""
    return eval_scores(trainer.run_dir, trainer.step, test)


def eval_scores(run_dir: Path, step: int, test) -> list[np.ndarray]:
    """Per test video, the snippet scores ``[T_v]`` a run's evaluation at ``step`` wrote
    (``<run_dir>/evals/step_<step>/scores.npz``, smoothed as the run's config says). A missing file, a test video it
    lacks or scores of another length than the video's snippets (another test set) is an :class:`AdplgError` naming
    the file."""
    path = Path(run_dir) / "evals" / f"step_{step}" / "scores.npz"
    if not path.is_file():
        raise AdplgError(f"{path}: expected the scores of the run's evaluation at step {step}, found no such file")
    with np.load(path) as saved:
        missing = [video.name for video in test.videos if video.name not in saved.files]
        if missing:
            raise AdplgError(f"{path}: expected scores for all {len(test.videos)} test videos, {len(missing)} missing "
                             f"(e.g. {missing[:3]}): the run was evaluated on another test set")
        scores = [saved[video.name] for video in test.videos]
    for video, crops, values in zip(test.videos, test.crop_index, scores, strict=True):
        snippets = int(test.store.lengths[crops[0]])
        if values.shape != (snippets,):
            raise AdplgError(f"{path}: expected {snippets} snippet scores for {video.name} (its test features), got "
                             f"shape {values.shape}: the run was evaluated on another test set")
    return scores


def run_seed(preset: str, overrides: list[str], seed: int, train, test, out: Path) -> dict:
    trainer, summary = train_seed(preset, overrides, seed, train, test, out)
    summary["scores"] = predict_snippet_scores(trainer.scoring_net, test, trainer.device)  # the last step's, raw
    summary["time_to_detect"] = detection_on_test_set(test, last_eval_scores(trainer, test), trainer.cfg)
    return summary


def record_losses(trainer: Trainer, steps: int) -> list[dict[str, float]]:
    """Have ``trainer`` keep the losses of its first ``steps`` steps (every logged term, by name); returns the list
    it fills while training."""
    trace: list[dict[str, float]] = []
    train_step = trainer.train_step

    def recording(step: int) -> dict:
        logs = train_step(step)
        if len(trace) < steps:
            trace.append({name: float(value) for name, value in sorted(logs.items())})
        return logs

    trainer.train_step = recording
    return trace


def loss_checksums(trace: list[dict[str, float]]) -> dict[int, str]:
    """Per n in ``CHECKSUM_STEPS``: the first 12 hex digits of the sha256 of the first n steps' losses (float32)."""
    out = {}
    for n in CHECKSUM_STEPS:
        if len(trace) >= n:
            values = np.asarray([v for step in trace[:n] for v in step.values()], dtype=np.float32)
            out[n] = hashlib.sha256(values.tobytes()).hexdigest()[:12]
    return out


def machine_details() -> dict:
    return {**versions(), "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="r1-cpu-small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="run directories (default: a temporary folder)")
    parser.add_argument("--write", help="append the results table to this markdown file")
    parser.add_argument("--json", help="write per-seed results (last / selected / best-on-test AUC and AP, the "
                                       "baselines, loss checksums, the machine) to this JSON file")
    parser.add_argument("--pin-numerics", action="store_true",
                        help="rerun with MKL / oneDNN pinned to their AVX2 code paths and one thread "
                             f"({' '.join(f'{k}={v}' for k, v in PINNED_NUMERICS.items())})")
    parser.add_argument("--ensemble", type=int, default=1, metavar="K",
                        help="each reported seed s is an ensemble of K runs with seeds s*K .. s*K+K-1, their last "
                             "steps' scores averaged (no selection); default 1 (single runs)")
    parser.add_argument("--train-half", type=int, choices=(1, 2),
                        help="train on the first or second half of each class's training videos only (by name)")
    parser.add_argument("--jobs", default="auto", metavar="N",
                        help="train N seeds at a time, each in its own process with (CPU cores / N) torch threads; "
                             "1: one process with torch's default threads; auto (default): on the CPU as many as "
                             "there are seeds, at most one per core, on a GPU 1. The thread count changes the float "
                             "rounding, so a seed's numbers depend on it (recorded per seed; docs/benchmarks.md)")
    parser.add_argument("--teacher", metavar="PRESET",
                        help="distillation (train.teacher, loss.distill): per seed, first train PRESET at the same "
                             "seed (or take it from --teacher-runs), then the preset learns from its scores")
    parser.add_argument("--teacher-runs", metavar="DIR",
                        help="with --teacher: reuse the teachers' run directories in DIR (<name>-seed<seed>-*, e.g. "
                             "an earlier --out; trained on the same videos: another --train-half needs another DIR); "
                             "seeds without a finished one are trained there")
    parser.add_argument("--distill", type=float, default=0.5, help="with --teacher: loss.distill (default 0.5)")
    parser.add_argument("--mil-steps", type=int, default=MIL_STEPS,
                        help=f"training steps of each seed's MIL ranking baseline (default {MIL_STEPS}, the "
                             "baseline of every table in docs/benchmarks.md; fewer only for quick checks)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.num_iters=2000")
    args = parser.parse_args(argv)
    if args.teacher_runs and not args.teacher:
        raise SystemExit("--teacher-runs: needs --teacher, the preset the teachers were trained with")
    if args.pin_numerics and any(os.environ.get(k) != v for k, v in PINNED_NUMERICS.items()):
        # MKL and oneDNN read these when they load, so they must be set before this process imports torch
        os.execve(sys.executable, [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])],
                  {**os.environ, **PINNED_NUMERICS})
    folder = shared_dir() / R1_FOLDER
    if not (folder / "test.npz").is_file():
        print(f"R1 data not found at {folder}; nothing to do (set ADPLG_SHARED)")
        return None
    cfg = build_config(args.preset, overrides=args.overrides)
    machine = machine_details()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items() if v not in (None, {})), flush=True)
    train, test = load_r1(cfg, folder, train_half=args.train_half)
    print(f"R1: {len(train.items)} train videos, {len(test.videos)} test videos, {len(test.gt.labels)} frames")
    baseline = baseline_metrics(cfg, train, test)  # per-snippet logistic regression, same data
    print(f"logistic regression: frame AUC {baseline['auc']:.4f}")
    args.jobs = parallel_jobs(args.jobs, len(args.seeds), cfg.train.device)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        # each seed is two tasks, its run and its MIL baseline, so that no core idles while one seed finishes
        teacher = args.teacher and (args.teacher, Path(args.teacher_runs or out / "teachers"), args.distill)
        tasks = [(i, part, seed, args.preset, list(args.overrides), args.ensemble, args.train_half, out, teacher,
                  args.mil_steps) for i, seed in enumerate(args.seeds) for part in ("run", "mil")]
        parts: dict[tuple[int, str], dict] = {}
        summaries: dict[int, dict] = {}

        def collect(i: int, part: str, value: dict) -> None:
            parts[i, part] = value
            if (i, "run") not in parts:
                return
            if (i, "mil") not in parts:
                print(f"seed {args.seeds[i]} trained: last step AUC {value['last']['test']['auc']:.4f} "
                      f"({value['seconds']:.0f} s); its MIL baseline is pending", flush=True)
                return
            summaries[i] = {**parts[i, "run"], "mil": parts[i, "mil"]}
            report_seed(args.seeds[i], summaries[i])

        if args.jobs > 1:
            threads = 1 if args.pin_numerics else max(1, (os.cpu_count() or 1) // args.jobs)
            print(f"{args.jobs} processes, {threads} torch thread(s) each", flush=True)
            context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked OpenMP state
            with context.Pool(args.jobs, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
                runs_first = sorted(tasks, key=lambda task: task[1] != "run")  # the long tasks first
                for i, part, value in pool.imap_unordered(worker_task, runs_first):
                    collect(i, part, value)
        else:
            for i, part, seed, preset, overrides, ensemble, _, run_out, teacher, mil_steps in tasks:  # data loaded
                collect(i, part, run_task(part, seed, preset, overrides, ensemble, run_out, train, test, teacher,
                                          mil_steps))
        results = [(seed, summaries[i]) for i, seed in enumerate(args.seeds)]
    mil = {k: float(np.mean([s["mil"][k] for _, s in results])) for k in ("auc", "ap", "auc_abnormal")}
    ensemble = None
    if len(results) > 1 and args.ensemble == 1:  # every seed's last step, scores averaged: no selection, no test labels
        mean_scores = [np.mean(v, axis=0) for v in zip(*(s["scores"] for _, s in results))]
        ensemble = {**score_metrics(test, mean_scores), "time_to_detect": detection_on_test_set(test, mean_scores, cfg)}
        print(f"ensemble of {len(results)} seeds (last steps): frame AUC {ensemble['auc']:.4f}")
    table = format_table(args, results, baseline, mil, ensemble)
    print("\n" + table)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write("\n" + table + "\n")
    if args.json:
        atomic_write_text(args.json, json.dumps(json_results(args, machine, results, baseline, mil, ensemble),
                                                indent=2) + "\n")
        print(f"results: {args.json}")
    return {"baseline": baseline, "mil": mil, "runs": results, "ensemble": ensemble}


def parallel_jobs(jobs: str, seeds: int, device: str) -> int:
    """``--jobs``: a positive number, or ``auto``: one process per seed up to the CPU cores (1 on a GPU)."""
    if jobs != "auto":
        if not jobs.isdigit() or int(jobs) < 1:
            raise SystemExit(f"--jobs: expected a positive number or auto, got {jobs!r}")
        return int(jobs)
    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(seeds, os.cpu_count() or 1))


def run_task(part: str, seed: int, preset: str, overrides: list[str], ensemble: int, out: Path, train,
             test, teacher: tuple[str, Path, float] | None = None, mil_steps: int = MIL_STEPS) -> dict:
    """One part of a reported seed: ``run`` (a training run, or an ensemble of ``ensemble`` runs, as a summary) or
    ``mil`` (the MIL baseline's metrics at the same seed, ``mil_steps`` steps). ``teacher``: (preset, runs folder,
    loss.distill)."""
    if part == "mil":
        return mil_metrics(build_config(preset, overrides=overrides), train, test, seed=seed, steps=mil_steps)
    members = [run_seed(preset, overrides + ["train.progress=false", *teacher_overrides(teacher, member, train, test)],
                        member, train, test, out)
               for member in range(seed * ensemble, (seed + 1) * ensemble)]
    cfg = build_config(preset, overrides=overrides)
    summary = members[0] if ensemble == 1 else ensemble_summary(members, test, cfg)
    summary["torch_threads"] = torch.get_num_threads()
    return summary


def teacher_overrides(teacher: tuple[str, Path, float] | None, seed: int, train, test) -> list[str]:
    """``train.teacher`` and ``loss.distill`` for a student at ``seed``: the teacher preset's run at the same seed in
    the runs folder (trained there first when it has none); none without a teacher."""
    if teacher is None:
        return []
    preset, folder, distill = teacher
    cfg = build_config(preset)
    runs = sorted(folder.glob(f"{cfg.name}-seed{seed}-*")) if folder.is_dir() else []
    done = [run for run in runs if checkpoint_file(run).is_file()
            and Checkpoint(checkpoint_file(run)).meta["step"] == cfg.train.num_iters]  # finished runs only
    if done:
        run_dir = done[-1]
    else:
        trainer, summary = train_seed(preset, ["train.progress=false"], seed, train, test, folder)
        run_dir = trainer.run_dir
        print(f"teacher {preset} seed {seed}: last step AUC {summary['last']['test']['auc']:.4f} ({run_dir})",
              flush=True)
    return [f"train.teacher={run_dir}", f"loss.distill={distill}"]


_WORKER_DATA: dict = {}


def worker_task(task: tuple) -> tuple[int, str, dict]:
    """``(i, part, seed, preset, overrides, ensemble, train_half, out, teacher, mil_steps)`` -> ``(i, part, result)``
    in a worker process of ``--jobs``; each worker loads the data (of ``train_half``) once."""
    i, part, seed, preset, overrides, ensemble, train_half, out, teacher, mil_steps = task
    key = (preset, tuple(overrides), train_half)
    if key not in _WORKER_DATA:
        _WORKER_DATA[key] = load_r1(build_config(preset, overrides=overrides), shared_dir() / R1_FOLDER,
                                    train_half=train_half)
    return i, part, run_task(part, seed, preset, overrides, ensemble, out, *_WORKER_DATA[key], teacher, mil_steps)


def report_seed(seed: int, summary: dict) -> None:
    last = summary["last"]
    print(f"seed {seed}: last step {last['step']} AUC {last['test']['auc']:.4f}"
          + (f", val-selected step {summary['val_selected']['step']} AUC "
             f"{summary['val_selected']['test']['auc']:.4f}" if "val_selected" in summary else "")
          + f", best-on-test {summary['best_on_test']['test']['auc']:.4f} ({summary['seconds']:.0f} s, "
          f"{summary['torch_threads']} thread(s)); MIL ranking {summary['mil']['auc']:.4f}", flush=True)
    if "loss_checksums" in summary:
        print("  loss checksums (steps " + " / ".join(map(str, summary["loss_checksums"])) + "): "
              + " / ".join(summary["loss_checksums"].values()), flush=True)
    if "time_to_detect" in summary:
        print(f"  time to detect (last step): {describe(summary['time_to_detect'])}", flush=True)
    if "member_last_auc" in summary:
        print("  members' last-step AUC: " + ", ".join(f"{a:.4f}" for a in summary["member_last_auc"]))
    print("  AUC by step: " + ", ".join(f"{h['step']}: {h['test']['auc']:.3f}"
                                        + (f" (val {h['val_video_auc']:.3f})" if "val_video_auc" in h else "")
                                        for h in summary["history"]), flush=True)


def json_results(args, machine: dict, results, baseline: dict, mil: dict, ensemble: dict | None) -> dict:
    """What ``--json`` writes: plain numbers per seed and for the baselines, for scripts comparing runs."""

    def metrics(record: dict | None) -> dict | None:
        if not record:
            return None
        return {"step": record["step"], "auc": record["test"]["auc"], "ap": record["test"]["ap"]}

    def plain(m: dict | None) -> dict | None:
        return {"auc": m["auc"], "ap": m["ap"]} if m else None

    seeds = [{"seed": seed, "last": metrics(s["last"]), "selected": metrics(s.get("val_selected")),
              "best_on_test_not_a_result": metrics(s["best_on_test"]), "seconds": round(s["seconds"], 1),
              "torch_threads": s["torch_threads"], "loss_checksums": s.get("loss_checksums"),
              "loss_trace": s.get("loss_trace"),
              "auc_by_step": [{"step": h["step"], "auc": h["test"]["auc"]} for h in s["history"] if "test" in h],
              "mil": plain(s["mil"]), "time_to_detect": s.get("time_to_detect"),
              "beats_baselines": bool(s["last"]["test"]["auc"] > max(baseline["auc"], s["mil"]["auc"]))}
             for seed, s in results]
    last = [s["last"]["auc"] for s in seeds]
    return {"command": " ".join(["python benchmarks/r1.py", *sys.argv[1:]]), "preset": args.preset,
            "train_half": args.train_half, "mil_steps": args.mil_steps,
            "overrides": list(args.overrides), "ensemble_members": args.ensemble, "machine": machine,
            "baselines": {"logistic_regression": plain(baseline), "mil_mean_of_seeds": plain(mil)}, "seeds": seeds,
            "last_auc_mean": float(np.mean(last)), "last_auc_std": float(np.std(last)),
            "ensemble_of_seeds": ensemble and {**plain(ensemble), "time_to_detect": ensemble["time_to_detect"]}}


def ensemble_summary(members: list[dict], test, cfg) -> dict:
    """One result from K runs: the mean of their last steps' snippet scores, evaluated like a single run."""
    scores = [np.mean(v, axis=0) for v in zip(*(m["scores"] for m in members))]
    metrics = score_metrics(test, scores)
    last = {"step": members[0]["last"]["step"], "test": metrics}
    return {"last": last, "best_on_test": {**last, "note": "an ensemble has no step selection"}, "scores": scores,
            "time_to_detect": detection_on_test_set(test, scores, cfg),
            "history": [{"step": f"ensemble of {len(members)}", "test": metrics}],
            "member_last_auc": [m["last"]["test"]["auc"] for m in members],
            "seconds": sum(m["seconds"] for m in members), "device": members[0]["device"]}


def format_table(args, results, baseline, mil, ensemble=None) -> str:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    on_gpu = bool(results) and results[0][1]["device"].startswith("cuda")
    threads = sorted({s["torch_threads"] for _, s in results}) or [torch.get_num_threads()]
    machine = (torch.cuda.get_device_name() if on_gpu else
               f"CPU ({'/'.join(map(str, threads))} torch thread(s) per process, {args.jobs} process(es))")
    command = " ".join(["python benchmarks/r1.py", *args.overrides, "--preset", args.preset, "--seeds",
                        *map(str, args.seeds), *(["--ensemble", str(args.ensemble)] if args.ensemble > 1 else []),
                        *(["--train-half", str(args.train_half)] if args.train_half else []),
                        *(["--jobs", str(args.jobs)] if args.jobs > 1 else [])])
    lines = [f"### R1, preset `{args.preset}`", "", f"Command: `{command}`",
             f"Machine: {machine}; torch {torch.__version__}; python {sys.version.split()[0]}; commit {commit}", "",
             "| seed | AUC (last step) | AUC (val-selected) | AUC best-on-test (not a result) | AP (last) "
             "| AUC_A (last) | time |", "|---|---|---|---|---|---|---|"]
    last, selected = [], []
    for seed, s in results:
        lt, sel, best = s["last"]["test"], s.get("val_selected"), s["best_on_test"]
        last.append(lt["auc"])
        if sel:
            selected.append(sel["test"]["auc"])
        sel_text = f"{sel['test']['auc']:.4f} (step {sel['step']})" if sel else "-"
        lines.append(f"| {seed} | {lt['auc']:.4f} (step {s['last']['step']}) | {sel_text} | "
                     f"{best['test']['auc']:.4f} (step {best['step']}) | {lt['ap']:.4f} | {lt['auc_abnormal']:.4f} "
                     f"| {s['seconds']:.0f} s |")
    sel_mean = f"{np.mean(selected):.4f} ± {np.std(selected):.4f}" if selected else "-"
    lines.append(f"| mean ± std | {np.mean(last):.4f} ± {np.std(last):.4f} | {sel_mean} | | | | |")
    if ensemble:
        lines.append(f"| ensemble: mean score of the {len(results)} seeds' last steps | {ensemble['auc']:.4f} | | | "
                     f"{ensemble['ap']:.4f} | {ensemble['auc_abnormal']:.4f} | |")
    for name, m in (("logistic regression (same data)", baseline),
                    ("MIL ranking, Sultani-style (same data, mean of the seeds)", mil)):
        lines.append(f"| {name} | {m['auc']:.4f} | | | {m['ap']:.4f} | {m['auc_abnormal']:.4f} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
