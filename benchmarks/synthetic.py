"""ADPLG-VAD against the per-snippet logistic regression and the MIL ranking baseline on synthetic UCF-format sets
(official layout: one ``[T, D]`` .npy per crop, official lists and annotation), several seeds, the same data for
all three. Prints a markdown table; CPU only. Last step, no selection on the test set.

    python benchmarks/synthetic.py --seeds 0 1 2                       # the demo's data (2 crops, 64-d, 40+40)
    python benchmarks/synthetic.py --crops 10 --dim 1024 --videos 100 --preset r1-improved --seeds 0 1 2
    python benchmarks/synthetic.py loss.smooth_axis=time --seeds 0 1 2  # overrides go first

``--videos N`` writes N training and N test videos (half normal, half abnormal). ``--preset`` is any preset; its
data settings (feature size, crops, layout) are replaced by the synthetic set's.
"""

import argparse
import json
import tempfile
import time

import numpy as np

from adplg.demo import train_and_compare
from adplg.io import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--preset", default="demo-cpu-small")
    parser.add_argument("--crops", type=int, default=None, help="crops per video (default: the demo's 2)")
    parser.add_argument("--dim", type=int, default=None, help="feature dimension (default: the demo's 64)")
    parser.add_argument("--videos", type=int, default=None,
                        help="videos per split, half normal and half abnormal (default: the demo's 80 / 40)")
    parser.add_argument("--json", help="write the per-seed results to this JSON file")
    parser.add_argument("overrides", nargs="*", help="config overrides for our model, e.g. loss.smooth_axis=time")
    args = parser.parse_args()
    data = {}
    if args.crops:
        data["crops"] = args.crops
    if args.dim:
        data["feature_dim"] = args.dim
    if args.videos:
        half = args.videos // 2
        data.update(num_train_normal=half, num_train_abnormal=args.videos - half, num_test_normal=half,
                    num_test_abnormal=args.videos - half)
    overrides = list(args.overrides)
    if args.preset != "demo-cpu-small":  # the synthetic set's snippets are 16 consecutive frames, as in the demo
        overrides = ["data.layout.kind=uniform", *overrides]
    rows = []
    for seed in args.seeds:
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            r = train_and_compare(tmp, seed=seed, num_iters=args.steps, overrides=overrides, preset=args.preset,
                                  data=data, mil=True)
        by_step = [{"step": h["step"], "auc": h["test"]["auc"]} for h in r.trainer.history if "test" in h]
        best = max(by_step, key=lambda e: e["auc"], default={"step": None, "auc": float("nan")})
        rows.append({"seed": seed, "ours": r.ours["auc"], "logistic": r.baseline["auc"], "mil": r.mil["auc"],
                     "ours_auc_a": r.ours["auc_abnormal"], "logistic_auc_a": r.baseline["auc_abnormal"],
                     "mil_auc_a": r.mil["auc_abnormal"], "auc_by_step": by_step, "best_on_test_not_a_result": best,
                     "seconds": round(time.time() - start, 1)})
        print(f"seed {seed}: ours {r.ours['auc']:.4f}  logistic {r.baseline['auc']:.4f}  MIL {r.mil['auc']:.4f}  "
              f"({rows[-1]['seconds']:.0f} s); best-on-test {best['auc']:.4f} at step {best['step']} (not a result)",
              flush=True)
    print("\n| seed | ADPLG-VAD frame AUC (last step) | logistic regression | MIL ranking | ADPLG AUC_A "
          "| logistic AUC_A | MIL AUC_A |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['ours']:.4f} | {r['logistic']:.4f} | {r['mil']:.4f} | {r['ours_auc_a']:.4f} | "
              f"{r['logistic_auc_a']:.4f} | {r['mil_auc_a']:.4f} |")
    mean = {k: (np.mean([r[k] for r in rows]), np.std([r[k] for r in rows])) for k in ("ours", "logistic", "mil")}
    print("| mean ± std | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in mean.values()) + " | | | |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"preset": args.preset, "data": data, "overrides": overrides,
                                                 "steps": args.steps, "seeds": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
