"""The R1 benchmark: real UCF-Crime I3D logits (../shared/docs/BENCHMARKS.md), several seeds, side by side with a
per-snippet logistic regression on the same data. Reads the data in place; exits cleanly when it is absent.

    python benchmarks/r1.py --preset r1-cpu-small --seeds 0 1 2             # CPU-sized model
    python benchmarks/r1.py train.device=cuda --preset r1-faithful --seeds 42 1 2   # overrides go first
    python benchmarks/r1.py --preset r1-cpu-small --seeds 0 --write docs/benchmarks.md

Reported per seed: the last evaluation (no selection), the validation-selected one when train.val_fraction > 0
(held-out *training* videos, video labels only), and best-on-test, labelled as such (never a result).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adplg.baselines import mil_ranking_baseline
from adplg.config import build_config
from adplg.data.r1 import R1_FOLDER, load_r1
from adplg.demo import baseline_metrics
from adplg.evaluation.evaluate import score_metrics
from adplg.training.engine import Trainer, create_run_dir

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("ADPLG_SHARED", REPO.parent / "shared"))


def mil_baseline(train, test, seed: int = 0) -> dict:
    """Deep MIL ranking (Sultani et al.) on the same pooled training videos."""
    scores = mil_ranking_baseline(train.features.numpy(), train.labels.numpy(),
                                  [test.crops(v)[0] for v in range(len(test.videos))], seed=seed)
    return score_metrics(test, scores)


def run_seed(preset: str, overrides: list[str], seed: int, train, test, out: Path) -> dict:
    cfg = build_config(preset, overrides=[f"train.seed={seed}", f"output_dir={out}", *overrides])
    start = time.time()
    trainer = Trainer(cfg, train, test, create_run_dir(cfg))
    summary = trainer.fit()
    summary["seconds"] = time.time() - start
    summary["history"] = trainer.history
    summary["device"] = str(trainer.device)
    return summary


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="r1-cpu-small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="run directories (default: a temporary folder)")
    parser.add_argument("--write", help="append the results table to this markdown file")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.num_iters=2000")
    args = parser.parse_args(argv)
    folder = shared_dir() / R1_FOLDER
    if not (folder / "test.npz").is_file():
        print(f"R1 data not found at {folder}; nothing to do (set ADPLG_SHARED)")
        return None
    cfg = build_config(args.preset, overrides=args.overrides)
    train, test = load_r1(cfg, folder)
    print(f"R1: {len(train.items)} train videos, {len(test.videos)} test videos, {len(test.gt.labels)} frames")
    baseline = baseline_metrics(cfg, train, test)  # per-snippet logistic regression, same data
    print(f"logistic regression: frame AUC {baseline['auc']:.4f}")
    mil = mil_baseline(train, test)
    print(f"MIL ranking: frame AUC {mil['auc']:.4f}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for seed in args.seeds:
            summary = run_seed(args.preset, list(args.overrides) + ["train.progress=false"], seed, train, test, out)
            results.append((seed, summary))
            last = summary["last"]
            print(f"seed {seed}: last step {last['step']} AUC {last['test']['auc']:.4f}"
                  + (f", val-selected step {summary['val_selected']['step']} AUC "
                     f"{summary['val_selected']['test']['auc']:.4f}" if "val_selected" in summary else "")
                  + f", best-on-test {summary['best_on_test']['test']['auc']:.4f} ({summary['seconds']:.0f} s)",
                  flush=True)
            print("  AUC by step: " + ", ".join(f"{h['step']}: {h['test']['auc']:.3f}"
                                                + (f" (val {h['val_video_auc']:.3f})" if "val_video_auc" in h else "")
                                                for h in summary["history"]), flush=True)
    table = format_table(args, results, baseline, mil)
    print("\n" + table)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write("\n" + table + "\n")
    return {"baseline": baseline, "mil": mil, "runs": results}


def format_table(args, results, baseline, mil) -> str:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    on_gpu = bool(results) and results[0][1]["device"].startswith("cuda")
    machine = torch.cuda.get_device_name() if on_gpu else f"CPU ({torch.get_num_threads()} threads)"
    command = " ".join(["python benchmarks/r1.py", *args.overrides, "--preset", args.preset, "--seeds",
                        *map(str, args.seeds)])
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
    for name, m in (("logistic regression (same data)", baseline), ("MIL ranking, Sultani-style (same data)", mil)):
        lines.append(f"| {name} | {m['auc']:.4f} | | | {m['ap']:.4f} | {m['auc_abnormal']:.4f} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
