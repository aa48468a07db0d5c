"""Diagnosis of the late decline of the frame AUC on R1 (issue 13, item 1): what changes over a long run.

Trains ``r1-cpu-small`` (or ``--preset``) for ``--steps`` steps and at every evaluation reports, beside branch 2's
frame AUC (the result):

  att_auc_a     frame AUC of branch 1's self attention within the abnormal test videos (each abnormal test video is
                fed as the abnormal half of a batch; the attention is what becomes pseudo-labels): does the
                pseudo-label *source* degrade?
  s2_auc_a      the same within-abnormal-video AUC of branch 2's scores, so the two are comparable
  pl_precision  precision / recall of a one-shot pseudo-label (min-max attention >= plg.mean_threshold) against the
                frame GT of the abnormal test videos (the test GT is used for this diagnosis only, never to select)
  pos_frac      over the training steps since the last evaluation: the fraction of hard-labelled snippets set to 1
                and the fraction kept by the variance filter
  s2_normal     mean branch-2 score on normal test videos vs abnormal videos (is branch 2 drifting overall?)

    python benchmarks/r1_decline.py --seeds 0 1 --steps 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from r1 import shared_dir  # noqa: E402

from adplg.config import build_config  # noqa: E402
from adplg.data.r1 import R1_FOLDER, load_r1  # noqa: E402
from adplg.evaluation.evaluate import predict_snippet_scores, score_metrics  # noqa: E402
from adplg.training.engine import Trainer, create_run_dir  # noqa: E402


@torch.no_grad()
def attention(trainer: Trainer, test) -> list[np.ndarray]:
    """Branch 1's min-max normalised self attention [T_v] of every test video (the video as the abnormal half)."""
    trainer.net_v.eval()
    out = []
    for v in range(len(test.videos)):
        x = torch.as_tensor(test.crops(v), dtype=torch.float32).to(trainer.device)  # [C, T, D]
        att = [trainer.net_v(torch.stack([c, c])).a_att_norm[0] for c in x]
        out.append(torch.stack(att).mean(0).cpu().numpy())
    return out


def within_abnormal_auc(test, scores: list[np.ndarray]) -> float:
    return float(score_metrics(test, scores)["auc_abnormal"])


def pl_precision_recall(test, att: list[np.ndarray], threshold: float) -> tuple[float, float]:
    from adplg.evaluation.evaluate import frame_scores

    frames = frame_scores(test, [(a >= threshold).astype(np.float64) for a in att])
    hit = tp = pos = 0
    for v in range(len(test.videos)):
        if not test.video_labels[v]:
            continue
        lo, hi = test.gt.offsets[v], test.gt.offsets[v + 1]
        gt, pl = test.gt.labels[lo:hi] > 0, frames[lo:hi] > 0.5
        tp += int((gt & pl).sum())
        hit += int(pl.sum())
        pos += int(gt.sum())
    return tp / max(hit, 1), tp / max(pos, 1)


def run(seed: int, preset: str, steps: int, every: int, overrides: list[str], out: Path) -> list[dict]:
    cfg = build_config(preset, overrides=[f"train.seed={seed}", f"output_dir={out}", "train.progress=false",
                                          f"train.num_iters={steps}", f"train.eval_every={every}", *overrides])
    train, test = load_r1(cfg, shared_dir() / R1_FOLDER)
    trainer = Trainer(cfg, train, test, create_run_dir(cfg))
    stats = {"pos": [], "keep": []}
    update = trainer.plg.update

    def counting(keys, att):
        labels = update(keys, att)
        if labels.hard.any():
            hard = labels.hard
            stats["pos"].append(float(labels.targets[hard].mean()))
            stats["keep"].append(float(labels.keep[hard].float().mean()))
        return labels

    trainer.plg.update = counting
    rows = []
    evaluate = trainer._evaluate_and_save

    def diagnosed(metrics_file):
        evaluate(metrics_file)
        att = attention(trainer, test)
        s2 = predict_snippet_scores(trainer.scoring_net, test, trainer.device)
        precision, recall = pl_precision_recall(test, att, cfg.plg.mean_threshold)
        normal = np.mean([s.mean() for s, y in zip(s2, test.video_labels) if not y])
        abnormal = np.mean([s.mean() for s, y in zip(s2, test.video_labels) if y])
        row = {"seed": seed, "step": trainer.step, "s2_auc": trainer.history[-1]["test"]["auc"],
               "s2_auc_a": within_abnormal_auc(test, s2), "att_auc_a": within_abnormal_auc(test, att),
               "pl_precision": precision, "pl_recall": recall,
               "pos_frac": float(np.mean(stats["pos"])) if stats["pos"] else None,
               "keep_frac": float(np.mean(stats["keep"])) if stats["keep"] else None,
               "s2_normal_mean": float(normal), "s2_abnormal_mean": float(abnormal)}
        stats["pos"].clear()
        stats["keep"].clear()
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    trainer._evaluate_and_save = diagnosed
    trainer.fit()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="r1-cpu-small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--json", help="write every row here")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if not (shared_dir() / R1_FOLDER / "test.npz").is_file():
        print("R1 data not found; nothing to do (set ADPLG_SHARED)")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            start = time.time()
            rows += run(seed, args.preset, args.steps, args.every, args.overrides, Path(tmp))
            print(f"seed {seed}: {time.time() - start:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
