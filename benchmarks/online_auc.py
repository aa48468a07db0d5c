"""Frame AUC of online scoring (``OnlineScorer``, as ``adplg watch`` uses it) against offline evaluation.

Each test video's snippets are pushed one by one through :class:`adplg.live.online.OnlineScorer` for every
ring-buffer window ``W`` and look-ahead delay ``L`` (default: 0 and the model's ``max(windows) + 1``; ``--delays``);
the online snippet scores are expanded to frames exactly as offline evaluation does (``frame_scores`` with the
test set's layout) and scored with the same frame metrics. Offline = the model's normal evaluation (whole video,
one forward).

    python benchmarks/online_auc.py                          # synthetic demo data, demo-cpu-small, seeds 0 1 2
    python benchmarks/online_auc.py --seeds 0 --windows 64 256
    python benchmarks/online_auc.py --checkpoint RUN_DIR [--preset P] [override ...]   # a trained model, its data
    python benchmarks/online_auc.py --r1 --seeds 0           # also R1 (r1-cpu-small trained here; slow on a CPU)

Overrides (``key=value``) apply to the config of the demo / R1 training or of the checkpoint.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adplg.evaluation.evaluate import predict_snippet_scores, score_metrics
from adplg.live.online import OnlineScorer, default_delay

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("ADPLG_SHARED", REPO.parent / "shared"))


def online_scores(model, test, window: int, delay: int, device: str = "cpu", encode_every: int = 1) -> list[np.ndarray]:
    """Per video, the snippet scores [T_v] of streaming its crops ``[C, T, D]`` snippet by snippet. With
    ``encode_every = k > 1`` snippet ``t`` gets the features of snippet ``t - t % k``, as ``adplg watch
    --encode-every k`` feeds the model when it runs the backbone on every k-th snippet only."""
    out = []
    for v in range(len(test.videos)):
        crops = test.crops(v)  # [C, T, D]
        scorer = OnlineScorer(model, window=window, delay=delay, device=device)
        scores = np.zeros(crops.shape[1])
        emitted = 0
        for t in range(crops.shape[1]):
            for i, s in scorer.push(crops[:, t - t % encode_every]):
                scores[i] = s
                emitted += 1
        for i, s in scorer.flush():
            scores[i] = s
            emitted += 1
        assert emitted == crops.shape[1], (emitted, crops.shape)
        out.append(scores)
    return out


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
            metrics = score_metrics(test, online_scores(model, test, window, delay, device, k), far_threshold)
            result["online"][(window, delay, k)] = metrics["auc"]
            result["seconds"][(window, delay, k)] = time.time() - start
            print(f"  W={window} L={delay} k={k}: online AUC {metrics['auc']:.4f} (offline {offline['auc']:.4f}, "
                  f"diff {metrics['auc'] - offline['auc']:+.4f}; {time.time() - start:.0f} s)", flush=True)
    return result


def demo_runs(seeds: list[int], windows: list[int], overrides: list[str], num_iters: int | None,
              out: Path, delays: list[str], encode_every: list[int]) -> list[dict]:
    from adplg.demo import train_and_compare

    results = []
    for seed in seeds:
        start = time.time()
        comparison = train_and_compare(out / f"seed{seed}", seed=seed, num_iters=num_iters, overrides=overrides)
        trainer = comparison.trainer
        print(f"demo seed {seed}: trained {trainer.step} steps in {time.time() - start:.0f} s; "
              f"{len(comparison.test.videos)} test videos, "
              f"{sum(comparison.test.crops(v).shape[1] for v in range(len(comparison.test.videos)))} snippets",
              flush=True)
        result = compare(trainer.scoring_net, comparison.test, windows, str(trainer.device),
                         trainer.cfg.eval.far_threshold, delays, encode_every)
        result["seed"] = seed
        results.append(result)
    return results


def r1_runs(seeds: list[int], windows: list[int], overrides: list[str], out: Path,
            delays: list[str], encode_every: list[int]) -> list[dict] | None:
    from adplg.config import build_config
    from adplg.data.r1 import R1_FOLDER, load_r1
    from adplg.training.engine import Trainer, create_run_dir

    folder = shared_dir() / R1_FOLDER
    if not (folder / "test.npz").is_file():
        print(f"R1 data not found at {folder}; skipping R1 (set ADPLG_SHARED)")
        return None
    results = []
    for seed in seeds:
        cfg = build_config("r1-cpu-small", overrides=[f"train.seed={seed}", f"output_dir={out}",
                                                      "train.progress=false", *overrides])
        train, test = load_r1(cfg, folder)
        start = time.time()
        trainer = Trainer(cfg, train, test, create_run_dir(cfg))
        trainer.fit()
        print(f"R1 seed {seed}: trained in {time.time() - start:.0f} s", flush=True)
        result = compare(trainer.scoring_net, test, windows, str(trainer.device), cfg.eval.far_threshold, delays,
                         encode_every)
        result["seed"] = seed
        results.append(result)
    return results


def checkpoint_runs(checkpoint: str, preset: str | None, windows: list[int], overrides: list[str],
                    delays: list[str], encode_every: list[int]) -> list[dict]:
    from adplg.checkpoints.load import load_scorer
    from adplg.data.datasets import build_test_set

    cfg, model = load_scorer([checkpoint], preset, None, overrides)
    test = build_test_set(cfg, progress=False)
    result = compare(model, test, windows, "cpu", cfg.eval.far_threshold, delays, encode_every)
    result["seed"] = checkpoint
    return [result]


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def format_table(title: str, results: list[dict], command: str) -> str:
    keys = list(results[0]["online"])
    lines = [f"#### {title}", "", f"Command: `{command}`", f"Machine: {machine()}", "",
             f"Seeds: {', '.join(str(r['seed']) for r in results)}. Offline frame AUC "
             f"{mean_std([r['offline'] for r in results])}.", "",
             "| W (buffer) | L (delay) | k (encode every) | online AUC | offline AUC | online - offline | "
             "max abs diff | time / seed |",
             "|---|---|---|---|---|---|---|---|"]
    for key in keys:
        window, delay, k = key
        online = [r["online"][key] for r in results]
        diff = [r["online"][key] - r["offline"] for r in results]
        seconds = np.mean([r["seconds"][key] for r in results])
        lines.append(f"| {window} | {delay} | {k} | {mean_std(online)} | {mean_std([r['offline'] for r in results])} | "
                     f"{np.mean(diff):+.4f} | {np.max(np.abs(diff)):.4f} | {seconds:.0f} s |")
    return "\n".join(lines)


def machine() -> str:
    return (f"{platform.platform()}, {os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), "
            f"torch {torch.__version__}, python {sys.version.split()[0]}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--windows", type=int, nargs="+", default=[64, 256, 1024], help="ring-buffer sizes W")
    parser.add_argument("--delays", nargs="+", default=["0", "default"],
                        help="look-ahead delays L in snippets; 'default' = max(windows) + 1 of the model")
    parser.add_argument("--encode-every", type=int, nargs="+", default=[1], metavar="K",
                        help="frame skipping as adplg watch --encode-every K: snippet t gets snippet t - t %% K's "
                             "features (default 1)")
    parser.add_argument("--num-iters", type=int, default=None, help="demo training steps (default: the preset's)")
    parser.add_argument("--checkpoint", help="score this trained model on its config's test set instead of the demo")
    parser.add_argument("--preset", default=None, help="with --checkpoint: the config preset")
    parser.add_argument("--r1", action="store_true", help="also train r1-cpu-small on R1 and compare (slow on CPU)")
    parser.add_argument("--no-demo", action="store_true", help="skip the synthetic demo data (e.g. with --r1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: small per-snippet forwards run faster on one thread)")
    parser.add_argument("--out", default=None, help="run directories (default: a temporary folder)")
    parser.add_argument("--write", help="append the tables to this markdown file")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.num_iters=300")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/online_auc.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: {command}\nmachine: {machine()}", flush=True)
    tables, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        if args.checkpoint:
            results["checkpoint"] = checkpoint_runs(args.checkpoint, args.preset, args.windows, args.overrides,
                                                    args.delays, args.encode_every)
            tables.append(format_table(f"Checkpoint {args.checkpoint}", results["checkpoint"], command))
        elif not args.no_demo:
            results["demo"] = demo_runs(args.seeds, args.windows, args.overrides, args.num_iters, out,
                                        args.delays, args.encode_every)
            tables.append(format_table("Synthetic demo data, `demo-cpu-small`", results["demo"], command))
        if args.r1:
            r1 = r1_runs(args.seeds, args.windows, args.overrides, out, args.delays, args.encode_every)
            if r1:
                results["r1"] = r1
                tables.append(format_table("R1 (real UCF-Crime I3D logits), `r1-cpu-small`", r1, command))
    text = "\n\n".join(tables)
    print("\n" + text)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write("\n" + text + "\n")
    return results


if __name__ == "__main__":
    main()
