"""ADPLG-VAD (demo-cpu-small) against the per-snippet logistic regression on the synthetic UCF-format sets, several
seeds, same data for both. Prints a markdown table; CPU only.

    python benchmarks/synthetic.py --seeds 0 1 2
    python benchmarks/synthetic.py loss.smooth_axis=time --seeds 0 1 2    # overrides go first
"""

import argparse
import tempfile
import time

import numpy as np

from adplg.demo import train_and_compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("overrides", nargs="*", help="config overrides for our model, e.g. loss.smooth_axis=time")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            r = train_and_compare(tmp, seed=seed, num_iters=args.steps, overrides=args.overrides)
        rows.append((seed, r.ours["auc"], r.baseline["auc"], r.ours["auc_abnormal"], r.baseline["auc_abnormal"],
                     time.time() - start))
        print(f"seed {seed}: ours {r.ours['auc']:.4f}  logistic {r.baseline['auc']:.4f}  ({rows[-1][-1]:.0f} s)",
              flush=True)
    print("\n| seed | ADPLG-VAD frame AUC (last step) | logistic regression frame AUC | ADPLG AUC_A | logistic AUC_A |")
    print("|---|---|---|---|---|")
    for seed, a, b, aa, ba, _ in rows:
        print(f"| {seed} | {a:.4f} | {b:.4f} | {aa:.4f} | {ba:.4f} |")
    ours, base = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    print(f"| mean ± std | {ours.mean():.4f} ± {ours.std():.4f} | {base.mean():.4f} ± {base.std():.4f} | | |")


if __name__ == "__main__":
    main()
