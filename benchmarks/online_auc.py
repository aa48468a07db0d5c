"""Online scoring (``OnlineScorer``, as ``adplg watch`` uses it) side by side with offline evaluation: frame AUC / AP
and the time to detect an anomaly at 1% and 5% false-alarm rate, per seed.

Rows, for each seed (one model of each kind trained per seed on the same data):

  (a) bidirectional, offline    the model's normal evaluation (whole video, one forward; the run's last evaluation)
  (b) bidirectional, online     ``OnlineScorer(model, window=W)`` at its default delay (``max(windows) + 1``)
  (c) causal, online            ``OnlineScorer(model, delay=0)`` of a model trained with ``model.causal=true``
  (d) causal, offline           that model's normal evaluation (equal to (c) when online scoring is exact)

Time to detect (:mod:`adplg.evaluation.detection`) uses each row's own scores: its thresholds are set on the normal
test videos' scores of that row, and the online rows add the scorer's latency (delay snippets x a snippet's duration,
frames per snippet / ``data.gt_fps``, per video). Smoothing as the config says: offline its ``eval.smooth_window``
(``eval.smooth_mode``), online the scorer's trailing mean over ``eval.smooth_window`` snippets, as ``adplg watch``.

    python benchmarks/online_auc.py                      # synthetic demo data: demo-cpu-small with and without
                                                         # model.causal=true, seeds 0 1 2
    python benchmarks/online_auc.py --r1 --no-demo       # R1: presets r1-improved / r1-improved-causal, seeds 0-4
    python benchmarks/online_auc.py --seeds 0 --no-causal train.num_iters=60 train.warm_up=20   # a quick check
    python benchmarks/online_auc.py --grid --seeds 0 --windows 64 256 --delays 0 default       # the W x L grid
    python benchmarks/online_auc.py --grid --checkpoint RUN_DIR [--preset P]                  # a trained model
    python benchmarks/online_auc.py --r1 --no-demo --runs RUNS_R1_IMPROVED RUNS_R1_CAUSAL     # R1, trained already
    python benchmarks/online_auc.py --seeds 0 --runs OUT OUT       # the demo runs of an earlier run with --out OUT

The causal rows need the config key ``model.causal``; without it they are skipped with a note. ``--write FILE``
appends the markdown tables, ``--json FILE`` writes every seed's numbers. Overrides (``key=value``) apply to every
model trained (or to the checkpoint's config).

``--runs BIDIRECTIONAL_DIR CAUSAL_DIR``: the same rows without training, from finished runs (of
``benchmarks/r1.py --out DIR``, or of this script's ``--out DIR``). Per seed, each folder must hold one finished run
(searched two levels deep) whose saved config has that ``train.seed``, the name (the ``--r1-presets``; the demo's
``demo-cpu-small``) and ``model.causal`` false / true (benchmarks/saved_runs.py). Rows (a) / (d) are its last
evaluation's scores (``evals/step_<last>/scores.npz``), rows (b) / (c) stream its ``checkpoints/last`` snippet
branch (the weight average where ``train.average_from`` / ``train.ema_decay`` is set: the weights that evaluation
scored), all with the run's saved config; the test set is built from that config (R1: read from ADPLG_SHARED).
Overrides and ``--num-iters`` are refused with ``--runs`` (the runs are scored as they were trained).

``--grid``: the earlier comparison, online frame AUC for every ring-buffer window ``W``, look-ahead delay ``L`` and
backbone stride ``k`` against the unsmoothed offline AUC (demo-cpu-small, and r1-cpu-small with ``--r1``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from online_batched import batched_online_scores, check_against_streaming, online_scores  # noqa: E402
from r1 import eval_scores, shared_dir, train_seed  # noqa: E402
from saved_runs import ScoringRun, find_run, load_run, trained_run  # noqa: E402

from adplg.evaluation.detection import TARGET_FARS, detection_on_test_set, far_key  # noqa: E402
from adplg.evaluation.evaluate import predict_snippet_scores, score_metrics  # noqa: E402
from adplg.live.online import OnlineScorer, default_delay  # noqa: E402

DEMO_SEEDS, R1_SEEDS = [0, 1, 2], [0, 1, 2, 3, 4]
DEMO_CAUSAL_OVERRIDES = ["model.causal=true", "eval.smooth_mode=trailing"]
DEMO_PRESET = "demo-cpu-small"  # what adplg.demo.train_and_compare trains (its runs' saved name)
DEMO_DATA: dict | None = None  # generate_synthetic_ucf options of the demo data (None: its defaults; tests shrink it)
R1_PRESETS = ("r1-improved", "r1-improved-causal")
# online rows are computed batched over the videos (online_batched.py) and checked against the real scorer streaming
# the first VERIFY_VIDEOS videos snippet by snippet (max_diff_streamed in the JSON)
VERIFY_VIDEOS = 8
KINDS = ("bidirectional", "causal")  # the two models of a seed, in the order of --runs and --r1-presets
SKIP_ONLINE: set[str] = set()  # --skip-online: kinds whose online row is not computed (the bidirectional one is slow)
ROW_NAMES = {"bidirectional offline": "(a) bidirectional, offline", "bidirectional online": "(b) bidirectional, online",
             "causal online": "(c) causal, online", "causal offline": "(d) causal, offline"}


def causal_available() -> bool:
    """Whether this version's config has ``model.causal`` (the causal snippet branch)."""
    from adplg.config import ModelConfig

    return "causal" in ModelConfig.model_fields


def latency_s(test, delay: int, fps: float) -> np.ndarray:
    """``[V]`` seconds a live score waits for ``delay`` snippets: ``delay`` x each video's frames per snippet /
    ``fps``."""
    frames = np.diff(test.gt.offsets)
    snippets = np.array([int(test.store.lengths[crops[0]]) for crops in test.crop_index])
    return delay * frames / np.maximum(snippets, 1) / fps


def row(test, cfg, scores: list[np.ndarray], delay: int, seconds: float, **extra) -> dict:
    """Frame AUC / AP and the time to detect of one kind of scoring, with the latency of ``delay`` snippets."""
    metrics = score_metrics(test, scores, cfg.eval.far_threshold)
    latency = latency_s(test, delay, cfg.data.gt_fps)
    return {"auc": metrics["auc"], "ap": metrics["ap"], "delay": delay, "latency_s": float(np.mean(latency)),
            "time_to_detect": detection_on_test_set(test, scores, cfg, latency_s=latency),
            "seconds": seconds, **extra}


def model_rows(kind: str, run: ScoringRun, test, window: int) -> dict[str, dict]:
    """The offline and online rows of one trained model (``kind``: ``bidirectional`` or ``causal``), just trained
    (:func:`trained_run`) or loaded (:func:`load_run`): offline its last evaluation's scores, online its scoring
    snippet branch streamed through :class:`OnlineScorer`."""
    cfg, model, device = run.cfg, run.model.eval(), run.device
    smooth = cfg.eval.smooth_window
    source = {"run_dir": str(run.run_dir), "step": run.step}
    rows = {f"{kind} offline": row(test, cfg, eval_scores(run.run_dir, run.step, test), 0, 0.0, **source)}
    if kind in SKIP_ONLINE:
        print(f"  {kind}: offline AUC {rows[f'{kind} offline']['auc']:.4f}, online row skipped", flush=True)
        return rows
    start = time.time()
    if kind == "causal":
        def make_scorer() -> OnlineScorer:
            return OnlineScorer(model, delay=0, device=device, smooth_window=smooth)
        used_window = None
    else:
        used_window = min(window, int(getattr(model, "max_len", window)))

        def make_scorer() -> OnlineScorer:
            return OnlineScorer(model, window=used_window, device=device, smooth_window=smooth)
    scorer = make_scorer()
    delay = scorer.latency_snippets
    scores = batched_online_scores(scorer, test)
    source["streamed_videos"] = min(VERIFY_VIDEOS, len(test.videos))
    source["max_diff_streamed"] = check_against_streaming(make_scorer, test, scores, VERIFY_VIDEOS)
    rows[f"{kind} online"] = row(test, cfg, scores, delay, time.time() - start, window=used_window, **source)
    print(f"  {kind}: offline AUC {rows[f'{kind} offline']['auc']:.4f}, online (L={delay}) AUC "
          f"{rows[f'{kind} online']['auc']:.4f} ({time.time() - start:.0f} s; streamed {source['streamed_videos']} "
          f"videos: max difference {source['max_diff_streamed']:.1e})", flush=True)
    if source["max_diff_streamed"] > 1e-5:
        raise AssertionError(f"{kind}: batched online scores differ from streaming by {source['max_diff_streamed']}")
    return rows


def side_by_side(seeds: list[int], causal: bool, window: int,
                 scored_run: Callable[[int, int], tuple[ScoringRun, Any]]) -> list[dict]:
    """Per seed, the rows (a)-(d) (:func:`model_rows`) of its bidirectional model and, with ``causal``, of its causal
    one; ``scored_run(seed, k)`` gives model ``k`` of ``seed`` (``KINDS[k]``), trained or loaded, and its test set."""
    results = []
    for seed in seeds:
        rows: dict[str, dict] = {}
        for k, kind in enumerate(KINDS[: 2 if causal else 1]):
            run, test = scored_run(seed, k)
            rows.update(model_rows(kind, run, test, window))
        results.append({"seed": seed, "rows": rows})
    return results


def demo_side_by_side(seeds: list[int], window: int, overrides: list[str], num_iters: int | None, out: Path,
                      causal: bool) -> list[dict]:
    from adplg.demo import train_and_compare

    def trained(seed: int, k: int) -> tuple[ScoringRun, Any]:
        start = time.time()
        comparison = train_and_compare(out / f"seed{seed}-{KINDS[k]}", seed=seed, num_iters=num_iters,
                                       overrides=[*overrides, *(DEMO_CAUSAL_OVERRIDES if k else [])],
                                       preset=DEMO_PRESET, data=DEMO_DATA)
        print(f"demo seed {seed}, {KINDS[k]}: trained {comparison.trainer.step} steps in {time.time() - start:.0f} s",
              flush=True)
        return trained_run(comparison.trainer), comparison.test

    return side_by_side(seeds, causal, window, trained)


def r1_folder() -> Path | None:
    """R1's data folder (under ADPLG_SHARED), or None, with a note, where it is absent."""
    from adplg.data.r1 import R1_FOLDER

    folder = shared_dir() / R1_FOLDER
    if not (folder / "test.npz").is_file():
        print(f"R1 data not found at {folder}; skipping R1 (set ADPLG_SHARED)")
        return None
    return folder


def r1_side_by_side(seeds: list[int], window: int, overrides: list[str], out: Path, causal: bool,
                    presets: tuple[str, str] = R1_PRESETS) -> list[dict] | None:
    from adplg.config import build_config
    from adplg.data.r1 import load_r1

    folder = r1_folder()
    if folder is None:
        return None
    train, test = load_r1(build_config(presets[0], overrides=overrides), folder)

    def trained(seed: int, k: int) -> tuple[ScoringRun, Any]:
        trainer, summary = train_seed(presets[k], [*overrides, "train.progress=false"], seed, train, test, out)
        print(f"R1 seed {seed}, {presets[k]}: trained in {summary['seconds']:.0f} s", flush=True)
        return trained_run(trainer), test

    return side_by_side(seeds, causal, window, trained)


def saved_side_by_side(seeds: list[int], window: int, folders: tuple[Path, Path], names: tuple[str, str],
                       causal: bool, load_test: Callable) -> list[dict]:
    """The rows of :func:`demo_side_by_side` / :func:`r1_side_by_side` from finished runs instead of training: per
    seed, the run of that seed named ``names[k]`` in ``folders[k]`` with ``model.causal`` false (``k = 0``) / true
    (``k = 1``). ``load_test(cfg)``: the test set of a run's config (loaded once per distinct data section)."""
    tests: dict[str, Any] = {}

    def loaded(seed: int, k: int) -> tuple[ScoringRun, Any]:
        run_dir, step = find_run(folders[k], name=names[k], seed=seed, causal=k == 1)
        run = load_run(run_dir, step)
        key = json.dumps(run.cfg.to_dict()["data"], sort_keys=True)
        if key not in tests:
            tests[key] = load_test(run.cfg)
        print(f"seed {seed}, {KINDS[k]}: {run_dir} (step {step})", flush=True)
        return run, tests[key]

    return side_by_side(seeds, causal, window, loaded)


def trained_results(args, out: Path, causal: bool) -> dict[str, list[dict]]:
    """The side-by-side rows of models trained here: the demo's (unless ``--no-demo``) and R1's with ``--r1``."""
    results = {}
    if not args.no_demo:
        results["demo"] = demo_side_by_side(args.seeds or DEMO_SEEDS, args.window, args.overrides, args.num_iters, out,
                                            causal)
    if args.r1:
        r1 = r1_side_by_side(args.seeds or R1_SEEDS, args.window, args.overrides, out, causal, tuple(args.r1_presets))
        if r1:
            results["r1"] = r1
    return results


def saved_runs_results(args, causal: bool) -> dict[str, list[dict]]:
    """``--runs``: the side-by-side rows of the demo's runs, or with ``--r1`` of R1's."""
    folders = (Path(args.runs[0]), Path(args.runs[1]))
    if not args.r1:
        from adplg.data.datasets import build_test_set

        return {"demo": saved_side_by_side(args.seeds or DEMO_SEEDS, args.window, folders, (DEMO_PRESET, DEMO_PRESET),
                                           causal, lambda cfg: build_test_set(cfg, progress=False))}
    from adplg.data.r1 import load_r1

    folder = r1_folder()
    if folder is None:
        return {}
    return {"r1": saved_side_by_side(args.seeds or R1_SEEDS, args.window, folders, tuple(args.r1_presets), causal,
                                     lambda cfg: load_r1(cfg, folder)[1])}


def mean_std(values: list[float], digits: int = 4, percent: bool = False) -> str:
    """``mean ± std`` over the seeds where the value is defined (``(n/N seeds)`` when some are NaN), ``-`` if none."""
    kept = [v * (100 if percent else 1) for v in values if not math.isnan(v)]
    if not kept:
        return "-"
    unit = "%" if percent else ""
    text = (f"{kept[0]:.{digits}f}{unit}" if len(values) == 1 else
            f"{np.mean(kept):.{digits}f}{unit} ± {np.std(kept):.{digits}f}{unit}")
    return text if len(kept) == len(values) else f"{text} ({len(kept)}/{len(values)} seeds)"


def side_by_side_table(title: str, results: list[dict], command: str) -> str:
    targets = [far_key(t) for t in TARGET_FARS]
    header = ["model, scoring", "L (latency)", "frame AUC", "AP"]
    for t in TARGET_FARS:
        header += [f"detected @{t:.0%} FAR", f"median s @{t:.0%}", f"p90 s @{t:.0%}"]
    header.append("achieved FAR " + " / ".join(f"{t:.0%}" for t in TARGET_FARS))
    lines = [f"#### {title}", "", f"Command: `{command}`", f"Machine: {machine()}", "",
             f"Seeds: {', '.join(str(r['seed']) for r in results)}; mean ± std over the seeds. Time to detect in "
             f"seconds from an annotated interval's start, over the detected intervals, latency included; thresholds "
             f"set per row on the normal test videos.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, label in ROW_NAMES.items():
        rows = [r["rows"][name] for r in results if name in r["rows"]]
        if not rows:
            continue
        window = rows[0].get("window")
        scoring = label + (f" W={window}" if window else "")
        cells = [scoring, f"{rows[0]['delay']} ({np.mean([r['latency_s'] for r in rows]):.2f} s)",
                 mean_std([r["auc"] for r in rows]), mean_std([r["ap"] for r in rows])]
        for key in targets:
            ttd = [r["time_to_detect"][key] for r in rows]
            cells += [mean_std([d["detected_share"] for d in ttd], 1, percent=True),
                      mean_std([d["median_s"] for d in ttd], 2), mean_std([d["p90_s"] for d in ttd], 2)]
        cells.append(" / ".join(mean_std([r["time_to_detect"][key]["achieved_far"] for r in rows], 2, percent=True)
                                for key in targets))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the W x L grid


def compare(model, test, windows: list[int], device: str = "cpu", far_threshold: float = 0.5,
            delays: list[str] = ("0", "default"), encode_every: list[int] = (1,)) -> dict:
    """Offline metrics and, per (W, L, k), online metrics of one model on one test set (``"default"`` in
    ``delays`` is :func:`default_delay` of the model; ``k``: the backbone encodes every k-th snippet)."""
    model.eval()
    offline = score_metrics(test, predict_snippet_scores(model, test, device), far_threshold)
    result = {"offline": offline["auc"], "offline_ap": offline["ap"], "online": {}, "seconds": {}}
    max_len = int(getattr(model, "max_len", max(windows)))
    for window in windows:
        window = min(window, max_len)
        for delay, k in [(default_delay(model) if d == "default" else int(d), k) for d in delays
                         for k in encode_every]:
            start = time.time()
            scores, _ = online_scores(lambda: OnlineScorer(model, window=window, delay=delay, device=device), test, k)
            metrics = score_metrics(test, scores, far_threshold)
            result["online"][(window, delay, k)] = metrics["auc"]
            result["seconds"][(window, delay, k)] = time.time() - start
            print(f"  W={window} L={delay} k={k}: online AUC {metrics['auc']:.4f} (offline {offline['auc']:.4f}, "
                  f"diff {metrics['auc'] - offline['auc']:+.4f}; {time.time() - start:.0f} s)", flush=True)
    return result


def grid_runs(args, out: Path) -> dict[str, list[dict]]:
    """The grid's results: of ``--checkpoint``, else of demo-cpu-small per seed, and of r1-cpu-small with ``--r1``."""
    from adplg.demo import train_and_compare

    results: dict[str, list[dict]] = {}
    if args.checkpoint:
        from adplg.checkpoints.load import load_scorer
        from adplg.data.datasets import build_test_set

        cfg, model = load_scorer([args.checkpoint], args.preset, None, args.overrides)
        result = compare(model, build_test_set(cfg, progress=False), args.windows, "cpu", cfg.eval.far_threshold,
                         args.delays, args.encode_every)
        return {"checkpoint": [{**result, "seed": args.checkpoint}]}
    if not args.no_demo:
        results["demo"] = []
        for seed in args.seeds or DEMO_SEEDS:
            comparison = train_and_compare(out / f"seed{seed}", seed=seed, num_iters=args.num_iters,
                                           overrides=args.overrides)
            trainer = comparison.trainer
            result = compare(trainer.scoring_net, comparison.test, args.windows, str(trainer.device),
                             trainer.cfg.eval.far_threshold, args.delays, args.encode_every)
            results["demo"].append({**result, "seed": seed})
    if args.r1:
        from adplg.config import build_config
        from adplg.data.r1 import R1_FOLDER, load_r1

        folder = shared_dir() / R1_FOLDER
        if (folder / "test.npz").is_file():
            train, test = load_r1(build_config("r1-cpu-small", overrides=args.overrides), folder)
            results["r1"] = []
            for seed in args.seeds or DEMO_SEEDS:
                trainer, _ = train_seed("r1-cpu-small", [*args.overrides, "train.progress=false"], seed, train, test,
                                        out)
                result = compare(trainer.scoring_net, test, args.windows, str(trainer.device),
                                 trainer.cfg.eval.far_threshold, args.delays, args.encode_every)
                results["r1"].append({**result, "seed": seed})
        else:
            print(f"R1 data not found at {folder}; skipping R1 (set ADPLG_SHARED)")
    return results


def grid_table(title: str, results: list[dict], command: str) -> str:
    keys = list(results[0]["online"])
    offline = mean_std([r["offline"] for r in results])
    lines = [f"#### {title}", "", f"Command: `{command}`", f"Machine: {machine()}", "",
             f"Seeds: {', '.join(str(r['seed']) for r in results)}. Offline frame AUC {offline}.", "",
             "| W (buffer) | L (delay) | k (encode every) | online AUC | offline AUC | online - offline | "
             "max abs diff | time / seed |",
             "|---|---|---|---|---|---|---|---|"]
    for key in keys:
        window, delay, k = key
        diff = [r["online"][key] - r["offline"] for r in results]
        seconds = np.mean([r["seconds"][key] for r in results])
        lines.append(f"| {window} | {delay} | {k} | {mean_std([r['online'][key] for r in results])} | {offline} | "
                     f"{np.mean(diff):+.4f} | {np.max(np.abs(diff)):.4f} | {seconds:.0f} s |")
    return "\n".join(lines)


def machine() -> str:
    return (f"{platform.platform()}, {os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), "
            f"torch {torch.__version__}, python {sys.version.split()[0]}")


TITLES = {"demo": "Synthetic demo data, `demo-cpu-small`", "r1": "R1 (real UCF-Crime I3D logits)"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds (default: demo 0 1 2, R1 0 1 2 3 4)")
    parser.add_argument("--window", type=int, default=1024,
                        help="ring buffer W of the bidirectional online row (default 1024, capped at max_len)")
    parser.add_argument("--no-causal", action="store_true", help="skip the causal rows")
    parser.add_argument("--r1", action="store_true", help="also R1 (r1-improved / r1-improved-causal; slow on CPU)")
    parser.add_argument("--r1-presets", nargs=2, default=list(R1_PRESETS), metavar=("BIDIRECTIONAL", "CAUSAL"),
                        help=f"the R1 presets (default {' '.join(R1_PRESETS)})")
    parser.add_argument("--no-demo", action="store_true", help="skip the synthetic demo data (e.g. with --r1)")
    parser.add_argument("--num-iters", type=int, default=None, help="demo training steps (default: the preset's)")
    parser.add_argument("--grid", action="store_true", help="the W x L x k grid of online AUC instead")
    parser.add_argument("--windows", type=int, nargs="+", default=[64, 256, 1024], help="--grid: ring-buffer sizes W")
    parser.add_argument("--delays", nargs="+", default=["0", "default"],
                        help="--grid: look-ahead delays L in snippets; 'default' = max(windows) + 1 of the model")
    parser.add_argument("--encode-every", type=int, nargs="+", default=[1], metavar="K",
                        help="--grid: frame skipping as adplg watch --encode-every K: snippet t gets snippet "
                             "t - t %% K's features (default 1)")
    parser.add_argument("--checkpoint", help="--grid: score this trained model on its config's test set")
    parser.add_argument("--preset", default=None, help="--grid with --checkpoint: the config preset")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: small per-snippet forwards run faster on one thread)")
    parser.add_argument("--out", default=None, help="run directories (default: a temporary folder)")
    parser.add_argument("--runs", nargs=2, metavar=("BIDIRECTIONAL_DIR", "CAUSAL_DIR"),
                        help="score finished runs instead of training: per seed, the run of that seed in each folder "
                             "(of benchmarks/r1.py --out, or of this script's --out; the demo's, or R1's with --r1 "
                             "--no-demo)")
    parser.add_argument("--skip-online", nargs="+", choices=KINDS, default=[],
                        help="leave out the online row of these kinds (the bidirectional one re-scores its whole "
                             "buffer per snippet: about 10 minutes a seed on R1 on one CPU thread)")
    parser.add_argument("--write", help="append the tables to this markdown file")
    parser.add_argument("--json", help="write every seed's numbers to this JSON file")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.num_iters=300")
    args = parser.parse_args(argv)
    if args.runs:
        refused = [name for name, given in (("--grid", args.grid), ("--num-iters", args.num_iters is not None),
                                            (f"overrides {' '.join(args.overrides)}", args.overrides)) if given]
        if refused:
            parser.error(f"--runs scores the runs as they were trained, with their saved configs: drop "
                         f"{', '.join(refused)}")
        if args.r1 and not args.no_demo:
            parser.error("--runs reads the runs of one data set: with --r1 add --no-demo (without --r1: the demo's)")
    torch.set_num_threads(args.threads)
    SKIP_ONLINE.update(args.skip_online)
    command = "python benchmarks/online_auc.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: {command}\nmachine: {machine()}", flush=True)
    causal = not args.no_causal and causal_available()
    if not args.no_causal and not args.grid and not causal:
        print("model.causal is not a config key of this version: the causal rows are skipped", flush=True)
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        if args.grid:
            results = grid_runs(args, out)
            tables = [grid_table(TITLES.get(name, f"Checkpoint {args.checkpoint}"), r, command)
                      for name, r in results.items()]
        else:
            results = saved_runs_results(args, causal) if args.runs else trained_results(args, out, causal)
            titles = {**TITLES, "r1": f"{TITLES['r1']}, `{'` / `'.join(args.r1_presets)}`"}
            tables = [side_by_side_table(titles[name], r, command) for name, r in results.items()]
    text = "\n\n".join(tables)
    print("\n" + text)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write("\n" + text + "\n")
    if args.json and not args.grid:
        from adplg.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps({"command": command, "machine": machine(), **results},
                                                      indent=2) + "\n")
        print(f"results: {args.json}")
    return results


if __name__ == "__main__":
    main()
