r"""ADPLG-VAD against the per-snippet logistic regression and the MIL ranking baseline on synthetic sets in the official
layouts (one ``[T, D]`` .npy per crop, official lists and ground truth of UCF-Crime, XD-Violence or ShanghaiTech),
several seeds, the same data for every model. A preset built on a faithful one (``base:``, e.g. the improved presets)
is also compared with its faithful twin: the faithful preset at the same model size and schedule
(:func:`adplg.preset_diff.faithful_twin`). Prints a markdown table of the preset's primary metric (frame AUC; AP,
the trapezoid PR-AUC, for XD); CPU only. Last step, no selection on the test set.

    python benchmarks/synthetic.py --seeds 0 1 2                       # the demo's data (2 crops, 64-d, 40+40)
    python benchmarks/synthetic.py --preset ucf-i3d-improved-cpu --crops 10 --dim 1024 --videos 100 --seeds 0 1 2
    python benchmarks/synthetic.py --preset xd-i3d-improved-cpu --like xd --crops 5 --dim 1024 --videos 100 \
        --seeds 0 1 2
    python benchmarks/synthetic.py --preset sht-i3d-improved-cpu --like sht --crops 10 --dim 1024 --videos 100 \
        --seeds 0 1 2
    python benchmarks/synthetic.py loss.smooth_axis=time --seeds 0 1 2  # overrides go first

``--videos N`` writes N training and N test videos (half normal, half abnormal). ``--preset`` is any preset; its
data settings (feature size, crops, list formats, layout) are replaced by the synthetic set's. ``--like`` picks the
set's layout (default: the preset's dataset; the CLIP presets take their dataset's). The overrides apply to the
preset and to its faithful twin alike.
"""

import argparse
import json
import tempfile
import time

import numpy as np

from adplg.config import build_config
from adplg.data.synthetic import SYNTHETIC_LIKES, synthetic_like_for
from adplg.demo import train_and_compare
from adplg.io import atomic_write_text
from adplg.preset_diff import faithful_twin
from adplg.preset_files import preset_lineage

METRIC_NAMES = {"auc": "frame AUC", "pr_auc": "AP (trapezoid PR-AUC)", "ap": "AP"}


def mean_std(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if values else "-"


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--preset", default="demo-cpu-small")
    parser.add_argument("--like", choices=SYNTHETIC_LIKES, default=None,
                        help="on-disk layout of the synthetic set (default: the preset's dataset)")
    parser.add_argument("--crops", type=int, default=None, help="crops per video (default: the demo's 2)")
    parser.add_argument("--dim", type=int, default=None, help="feature dimension (default: the demo's 64)")
    parser.add_argument("--videos", type=int, default=None,
                        help="videos per split, half normal and half abnormal (default: the demo's 80 / 40)")
    parser.add_argument("--no-faithful", action="store_true",
                        help="skip the faithful twin of a preset built on a faithful one")
    parser.add_argument("--json", help="write the per-seed results to this JSON file")
    parser.add_argument("overrides", nargs="*", help="config overrides of both models, e.g. loss.smooth_axis=time")
    args = parser.parse_args()
    data: dict = {}
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
    chosen = build_config(args.preset, overrides=overrides)
    metric = chosen.eval.primary
    data["like"] = args.like or synthetic_like_for(chosen.data)
    twin = None if args.no_faithful or len(preset_lineage(args.preset)) == 1 else faithful_twin(args.preset)
    rows = []
    for seed in args.seeds:
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            r = train_and_compare(tmp, seed=seed, num_iters=args.steps, overrides=overrides, preset=args.preset,
                                  data=data, mil=True)
            f = None
            if twin is not None:
                f = train_and_compare(tmp, seed=seed, num_iters=args.steps, overrides=[*twin[1], *overrides],
                                      preset=twin[0], data=data, reuse_data=True)
        by_step = [{"step": h["step"], metric: h["test"][metric]} for h in r.trainer.history if "test" in h]
        best = max(by_step, key=lambda e: e[metric], default={"step": None, metric: float("nan")})
        row = {"seed": seed, "metric": metric, "ours": r.ours[metric], "faithful": f.ours[metric] if f else None,
               "logistic": r.baseline[metric], "mil": r.mil[metric],
               "ours_auc": r.ours["auc"], "faithful_auc": f.ours["auc"] if f else None, "mil_auc": r.mil["auc"],
               "ours_auc_a": r.ours["auc_abnormal"], "faithful_auc_a": f.ours["auc_abnormal"] if f else None,
               "logistic_auc_a": r.baseline["auc_abnormal"], "mil_auc_a": r.mil["auc_abnormal"],
               "auc_by_step": by_step, "best_on_test_not_a_result": best,
               "faithful_by_step": [{"step": h["step"], metric: h["test"][metric]}
                                    for h in (f.trainer.history if f else []) if "test" in h],
               "seconds": round(time.time() - start, 1)}
        row["above_faithful_and_mil"] = row["ours"] > max(row["mil"], row["faithful"] or -1.0)
        rows.append(row)
        faithful = f"  faithful twin {row['faithful']:.4f}" if f else ""
        print(f"seed {seed}: ours {row['ours']:.4f}{faithful}  logistic {row['logistic']:.4f}  MIL {row['mil']:.4f} "
              f"({metric}, {row['seconds']:.0f} s); best-on-test {best[metric]:.4f} at step {best['step']} (not a "
              f"result)", flush=True)
    name = METRIC_NAMES.get(metric, metric)
    twin_label = f"faithful twin ({twin[0]}, same size and schedule)" if twin else "faithful twin"
    print(f"\n{name}, last step; preset {args.preset}, synthetic {data['like']}-like set")
    print(f"| seed | {args.preset} | {twin_label} | MIL ranking | logistic regression | above the twin and MIL "
          f"| {args.preset} AUC_A | MIL AUC_A |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['ours']:.4f} | {cell(r['faithful'])} | {r['mil']:.4f} | {r['logistic']:.4f} | "
              f"{'yes' if r['above_faithful_and_mil'] else 'no'} | {r['ours_auc_a']:.4f} | {r['mil_auc_a']:.4f} |")
    above = sum(r["above_faithful_and_mil"] for r in rows)
    print(f"| mean ± std | {mean_std(rows, 'ours')} | {mean_std(rows, 'faithful')} | {mean_std(rows, 'mil')} | "
          f"{mean_std(rows, 'logistic')} | {above} of {len(rows)} | | |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"preset": args.preset, "faithful_twin": twin, "metric": metric,
                                                 "data": data, "overrides": overrides, "steps": args.steps,
                                                 "seeds": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
