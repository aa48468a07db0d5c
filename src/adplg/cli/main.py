"""``adplg`` command line: train, test, demo, presets.

User errors (bad files, config, arguments) print one clear message and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from adplg.errors import AdplgError

# the official scripts' flags -> config keys
SEED_FLAGS = {
    "thre_pesudo_a": ("plg.mean_threshold", float),
    "thre_var_a": ("plg.var_threshold", float),
    "pl_his_num": ("plg.history", int),
    "warm_up": ("train.warm_up", int),
    "seed": ("train.seed", int),
    "batch_size": ("train.batch_size", int),
    "num_iters": ("train.num_iters", int),
    "device": ("train.device", str),
    "feature_root": ("data.feature_root", str),
    "list_dir": ("data.list_dir", str),
    "output_dir": ("output_dir", str),
}

EXAMPLES_TRAIN = """examples:
  adplg train --preset ucf-i3d --list_dir ADPLG-VAD/list --feature_root /data/UCF-10Crop
  adplg train --preset xd-i3d --feature_root /data/xd train.seed=1 train.num_iters=5000
  adplg train --resume runs/ucf-i3d-seed42-20261127-101500
"""
EXAMPLES_TEST = """examples:
  adplg test --model_file runs/ucf-i3d-seed42-.../checkpoints/step_20000.safetensors
  adplg test --preset ucf-i3d --model_file ucf_model_s_best.pkl --feature_root /data/UCF-10Crop
  # an ensemble: the mean score of several runs (e.g. three seeds)
  adplg test --model_file runs/ucf-s0/checkpoints/last.safetensors runs/ucf-s1 runs/ucf-s2
"""
EXAMPLES_DEMO = """examples:
  adplg demo                          # writes runs/demo: data, run directory, scores.png, demo_results.json
  adplg demo --out runs/demo-s1 --seed 1 --steps 300
"""


def _add_config_args(p: argparse.ArgumentParser, preset_default: str | None) -> None:
    p.add_argument("--preset", default=preset_default,
                   help="dataset/feature preset (see `adplg presets`)"
                   + (f"; default {preset_default}" if preset_default else ""))
    p.add_argument("--config", help="a YAML file merged over the preset")
    for flag, (key, kind) in SEED_FLAGS.items():
        p.add_argument(f"--{flag}", type=kind, default=None, help=f"sets {key}")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="dotted config overrides")


def _overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for flag, (key, _) in SEED_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out + list(args.overrides)


def cmd_presets(args: argparse.Namespace) -> int:
    from adplg.config import build_config, preset_names

    for name in preset_names():
        cfg = build_config(name)
        p = cfg.plg
        print(f"{name:16s} {cfg.data.format:6s} dim={cfg.data.feature_dim:<5d} crops={cfg.data.train_crops}/"
              f"{cfg.data.test_crops}  {p.mean_threshold}/{p.var_threshold}/{p.history}/{cfg.train.warm_up}  "
              f"{cfg.description}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from adplg.checkpoint import Checkpoint
    from adplg.config import build_config
    from adplg.data.datasets import build_test_set, build_train_set, data_manifest
    from adplg.training.engine import Trainer, create_run_dir

    if args.resume:
        ckpt = Checkpoint(args.resume)
        cfg = build_config(base=ckpt.meta["config"], overrides=_overrides(args))
        run_dir = ckpt.path.parent.parent
    else:
        cfg = build_config(args.preset, args.config, _overrides(args))
    progress = cfg.train.progress
    train = build_train_set(cfg, progress=progress)
    test = None if args.no_eval else build_test_set(cfg, progress=progress)
    if not args.resume:
        run_dir = create_run_dir(cfg, args.run_dir)
    manifest = data_manifest(cfg, train, test)
    trainer = Trainer(cfg, train, test, run_dir, manifest=manifest)
    if args.resume:
        trainer.resume(ckpt)
    print(f"run directory: {run_dir}")
    summary = trainer.fit()
    _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    primary = summary.get("primary_metric", "auc")
    for name in ("last", "val_selected", "best_on_test"):
        rec = summary.get(name)
        if not rec:
            continue
        test = rec.get("test", {})
        shown = " ".join(f"{k}={test[k]:.4f}" for k in ("auc", "ap", "pr_auc", "auc_abnormal", "far") if k in test)
        note = " (chosen on the test set; for comparison only)" if name == "best_on_test" else ""
        val = f" val_video_auc={rec['val_video_auc']:.4f}" if "val_video_auc" in rec else ""
        print(f"{name:13s} step {rec['step']:>6d}: {shown}{val}{note}")
    if "last" in summary:
        print(f"primary metric: {primary}")


def split_model_files(words: list[str]) -> tuple[list[str], list[str]]:
    """``--model_file A B k=v``: argparse gives every word to the option; ``key=value`` words that are not files
    are config overrides."""
    overrides = [w for w in words if "=" in w and not Path(w).exists()]
    return [w for w in words if w not in overrides], overrides


def cmd_test(args: argparse.Namespace) -> int:
    from adplg.data.datasets import build_test_set
    from adplg.evaluation.evaluate import evaluate, write_results
    from adplg.inference.load import load_scorer
    from adplg.runtime import resolve_device

    files, overrides = split_model_files(args.model_file)
    args.model_file = files
    cfg, net_s = load_scorer(files, args.preset, args.config, _overrides(args) + overrides)
    device = resolve_device(cfg.train.device)
    test = build_test_set(cfg, progress=cfg.train.progress)
    metrics, scores = evaluate(net_s.to(device), test, device, cfg.eval.far_threshold, progress=cfg.train.progress,
                               precision=cfg.eval.precision, batch_snippets=cfg.eval.batch_snippets,
                               smooth_window=cfg.eval.smooth_window)
    model_file = Path(args.model_file[0])
    suffix = f"-ensemble{len(args.model_file)}" if len(args.model_file) > 1 else ""
    out = Path(args.out) if args.out else model_file.parent / f"test-{model_file.stem}{suffix}"
    write_results(out, test, metrics, scores, extra={"model_file": [str(f) for f in args.model_file],
                                                     "config": cfg.to_dict()})
    for k in ("auc", "ap", "pr_auc", "auc_abnormal", "far"):
        if k in metrics:
            print(f"{k:13s} {metrics[k]:.4f}")
    print(f"results: {out / 'results.json'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from adplg.demo import run_demo

    run_demo(Path(args.out), num_iters=args.steps, seed=args.seed, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adplg", description="ADPLG-VAD weakly supervised video anomaly detection")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train both branches", epilog=EXAMPLES_TRAIN,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_args(p, "ucf-i3d")
    p.add_argument("--run_dir", help="run directory (default runs/<preset>-seed<seed>-<time>)")
    p.add_argument("--resume", help="a run directory or a full checkpoint to continue")
    p.add_argument("--no_eval", action="store_true", help="train without a test set")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="evaluate a checkpoint (ours or the authors' .pkl)", epilog=EXAMPLES_TEST,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_args(p, None)
    p.add_argument("--model_file", required=True, nargs="+",
                   help="our .safetensors checkpoint, a run directory, or *_model_s_*.pkl; several: their mean score")
    p.add_argument("--out", help="folder for results.json and scores.npz")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("demo", help="synthetic UCF-format data -> CPU-sized training -> metrics and a score plot",
                       epilog=EXAMPLES_DEMO, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--steps", type=int, default=None, help="training iterations (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=cmd_presets)

    from adplg.cli import doctor, export, extract, score

    extract.add_parser(sub)
    score.add_parser(sub)
    export.add_parser(sub)
    doctor.add_parser(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that ``key=value`` overrides may also follow options after other positionals
    (``adplg score DIR --checkpoint C k=v``), which plain argparse accepts only in the first run of bare words."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except AdplgError as exc:
        if args.verbose:
            raise
        print(f"adplg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adplg: interrupted", file=sys.stderr)
        return 130


def legacy_entry(preset: str, command: str) -> None:
    """The official scripts' commands (``python ucf_main.py --thre_pesudo_a ...``) as thin wrappers."""
    sys.exit(main([command, "--preset", preset, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
