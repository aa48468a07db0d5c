"""``adplg`` command line: train, test, demo, presets.

User errors (bad files, config, arguments) print one clear message and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from adplg._version import __version__
from adplg.cli.common import (
    SEED_FLAGS,
    add_config_args,
    chosen_preset,
    config_overrides,
    normalize_spellings,
    option_for,
    split_model_files,
)
from adplg.errors import AdplgError

EXAMPLES_TRAIN = """examples:
  adplg train --preset ucf-i3d --list_dir ADPLG-VAD/list --feature_root /data/UCF-10Crop
  adplg train --preset xd-i3d --feature_root /data/xd train.seed=1 train.num_iters=5000
  adplg train --preset xd-i3d --improved --feature_root /data/xd      # xd-i3d-improved (adplg presets)
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


PRESET_COLUMNS = ("preset", "format", "feature_dim", "crops train/test",
                  "thre_pesudo_a/thre_var_a/pl_his_num/warm_up", "description")


def preset_rows() -> list[tuple[str, ...]]:
    """One row of :data:`PRESET_COLUMNS` per preset: its data format and feature size, its crops per training / test
    video, the official flags' values (``plg.mean_threshold / plg.var_threshold / plg.history / train.warm_up``)."""
    from adplg.config import build_config
    from adplg.preset_files import preset_names

    rows: list[tuple[str, ...]] = []
    for name in preset_names():
        cfg = build_config(name)
        p = cfg.plg
        rows.append((name, cfg.data.format, str(cfg.data.feature_dim),
                     f"{cfg.data.train_crops}/{cfg.data.test_crops}",
                     f"{p.mean_threshold}/{p.var_threshold}/{p.history}/{cfg.train.warm_up}", cfg.description))
    return rows


def derived_preset_lines(width: int = 120) -> list[str]:
    """For every preset built on another (``base:``): what it changes against its faithful preset, the model's
    options and its size and schedule apart, wrapped to ``width``."""
    from adplg.preset_diff import changes_text, faithful_preset, preset_changes, split_changes

    lines = []
    for name in preset_names_with_base():
        options, size = split_changes(preset_changes(name))
        lines.append(f"  {name} (against {faithful_preset(name)}):")
        lines.append(changes_text(options, width, label="      options:           "))
        if size:
            lines.append(changes_text(size, width, label="      size and schedule: "))
    return lines


def preset_names_with_base() -> list[str]:
    """The presets built on another preset (``base:``), sorted."""
    from adplg.preset_files import preset_lineage, preset_names

    return [name for name in preset_names() if len(preset_lineage(name)) > 1]


def cmd_presets(args: argparse.Namespace) -> int:
    """``adplg presets``: a table of the bundled presets (:data:`PRESET_COLUMNS`), columns aligned, then what each
    preset built on another changes against its faithful preset; ``--diff NAME``: those changes one key per line.
    Returns 0."""
    if args.diff:
        return print_preset_diff(args.diff, args.against)
    if args.against:
        raise AdplgError(f"--against {args.against} compares with --diff NAME: expected --diff, got none")
    rows = [PRESET_COLUMNS, *preset_rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(PRESET_COLUMNS) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    print("\nwhat the presets built on another change against their faithful preset (resolved configs; "
          "`adplg presets --diff NAME` one key per line):")
    print("\n".join(derived_preset_lines()))
    return 0


def print_preset_diff(name: str, against: str | None) -> int:
    """``adplg presets --diff NAME [--against OTHER]``: one changed key per line, ``key  before -> after``. Returns
    0."""
    from adplg.preset_diff import faithful_preset, preset_changes, show_value

    other = against or faithful_preset(name)
    changes = preset_changes(name, other)
    print(f"# {name} against {other}: {len(changes)} key(s) differ")
    width = max((len(key) for key, _, _ in changes), default=0)
    for key, old, new in changes:
        print(f"{key:{width}s}  {show_value(old)} -> {show_value(new)}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``adplg config``: every config key with its value (in a preset or the defaults) and description. Returns 0."""
    from adplg.config import config_reference

    rows = config_reference(args.preset)
    width = max(len(key) for key, _, _ in rows)
    print(f"# every config key, its value in {'preset ' + repr(args.preset) if args.preset else 'the defaults'}, "
          f"and what it sets; change one with section.key=value")
    for key, value, description in rows:
        print(f"{key:{width}s}  {value!s:24s}  {description}")
    return 0


def _check_train_output(args: argparse.Namespace) -> None:
    """Before loading any data: the run directory (``--run_dir``, the resumed run's, or the folder ``output_dir``
    makes it in) can be written."""
    from adplg.io import check_output_dir

    if args.resume is not None:
        from adplg.checkpoints.format import checkpoint_file

        run_dir = checkpoint_file(args.resume).parent.parent
        if run_dir.is_dir():  # a missing checkpoint is reported by train itself
            check_output_dir(run_dir, "run directory (--resume)")
    elif args.run_dir is not None:
        check_output_dir(args.run_dir, "run directory (--run_dir)")
    else:
        from adplg.config import build_config

        cfg = build_config(args.preset or "ucf-i3d", args.config, config_overrides(args))
        check_output_dir(cfg.output_dir, "output_dir (where the run directory is made)")


def cmd_train(args: argparse.Namespace) -> int:
    """``adplg train``: train a run, print its summary and checkpoint. Returns 0."""
    from adplg.training.run import train

    args.preset = chosen_preset(args)
    if args.teacher:  # a missing teacher is refused by train() before the run directory is made
        given = any(o.startswith("loss.distill=") for o in args.overrides)
        distill = [] if given else [f"loss.distill={TEACHER_DISTILL}"]
        args.overrides = [f"train.teacher={Path(args.teacher).resolve()}", *distill, *args.overrides]
    _check_train_output(args)
    result = train(args.preset, overrides=config_overrides(args), config_file=args.config, run_dir=args.run_dir,
                   resume=args.resume, evaluate=not args.no_eval,
                   on_start=lambda run_dir: print(f"run directory: {run_dir}"))
    _print_summary(result.summary)
    print(f"checkpoint: {result.checkpoint}")
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


def cmd_test(args: argparse.Namespace) -> int:
    """``adplg test``: evaluate checkpoint(s) on the test set and print the metrics. Returns 0."""
    from adplg.evaluation.detection import describe
    from adplg.evaluation.run import TEST_OUTPUT_NAMES, test_checkpoints
    from adplg.io import check_output_owner

    if args.out is not None:  # before any compute, in the command's own words
        check_output_owner(args.out, "test", TEST_OUTPUT_NAMES, what="test --out folder", overwrite=args.overwrite)
    args.preset = chosen_preset(args)
    files, overrides = split_model_files(args.model_file)
    result = test_checkpoints(files, preset=args.preset, config_file=args.config,
                              overrides=config_overrides(args) + overrides, out_dir=args.out, plot=not args.no_plot,
                              overwrite=args.overwrite)
    for k in ("auc", "ap", "pr_auc", "auc_abnormal", "far"):
        if k in result.metrics:
            print(f"{k:13s} {result.metrics[k]:.4f}")
    print(f"time to detect {describe(result.time_to_detect)}")
    print(f"results: {result.out_dir / 'results.json'}" + ("" if args.no_plot else
                                                          f" (score plot: {result.out_dir / 'scores.png'})"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``adplg demo``: train and evaluate on synthetic data, compared with the baselines. Returns 0."""
    from adplg.demo import DEMO_OUTPUT_NAMES, run_demo
    from adplg.io import check_output_owner

    check_output_owner(args.out, "demo", DEMO_OUTPUT_NAMES, what="demo --out folder", overwrite=args.overwrite)
    run_demo(Path(args.out), num_iters=args.steps, seed=args.seed, progress=not args.quiet, overwrite=args.overwrite)
    return 0


# loss.distill of --teacher: on R1 a causal student learnt best from half pseudo-labels, half teacher
# (docs/benchmarks.md)
TEACHER_DISTILL = 0.5

# the official flags that ``test`` uses: where the data are and the device (the others set training options)
TEST_FLAGS = ("feature_root", "list_dir", "device")


def add_train_arguments(p: argparse.ArgumentParser, preset_default: str) -> None:
    """The arguments of ``adplg train`` (and of ``python ucf_main.py``, with its preset as the default)."""
    add_config_args(p, preset_default)
    p.add_argument("--run_dir", help="run directory (default runs/<preset>-seed<seed>-<time>)")
    p.add_argument("--resume", help="a run directory or a full checkpoint to continue (a run whose checkpoints/last "
                                    "does not verify, e.g. after a kill during a save, continues from the newest full "
                                    "checkpoint beside it that does, with a warning)")
    p.add_argument("--no_eval", action="store_true", help="train without a test set")
    p.add_argument("--teacher", help="not in the paper: a trained run directory (or checkpoint) whose snippet "
                                     f"scores branch 2 also learns from (train.teacher; loss.distill {TEACHER_DISTILL} "
                                     "unless set), e.g. a bidirectional run as the teacher of a causal preset")
    p.set_defaults(func=cmd_train)


def add_test_arguments(p: argparse.ArgumentParser, preset_default: str | None, official: bool = False) -> None:
    """The arguments of ``adplg test``: the official flags test uses; ``official`` (``python ucf_test.py``) accepts
    the others too, in a help section of their own, as the official test scripts did."""
    unused = [flag for flag in SEED_FLAGS if flag not in TEST_FLAGS] if official else []
    add_config_args(p, preset_default, flags=TEST_FLAGS, unused_flags=unused)
    p.add_argument("--model_file", required=True, nargs="+",
                   help="our .safetensors checkpoint, a run directory, or *_model_s_*.pkl; several: their mean score")
    p.add_argument("--out", help="folder for results.json, scores.npz and scores.png (default: inside the run, "
                                 "<run>/tests/<checkpoint>)")
    p.add_argument("--no_plot", action="store_true", help="skip the score plot")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a --out folder holding results.json/scores.npz/scores.png that an earlier "
                        "`adplg test` did not write (default: refuse, nothing is changed)")
    p.set_defaults(func=cmd_test)


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v`` / ``--verbose``: debug logging and full tracebacks."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")


TEST_DESCRIPTION = ("Evaluate a checkpoint on the config's test set. Our checkpoints build the model they were\n"
                    "trained with; --preset, --config and the overrides supply the data paths, test crops and\n"
                    "evaluation settings.")


def build_parser() -> argparse.ArgumentParser:
    """The ``adplg`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="adplg", description="ADPLG-VAD weakly supervised video anomaly detection")
    add_verbose(parser)
    parser.add_argument("--version", action="version", version=f"adplg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train both branches", epilog=EXAMPLES_TRAIN,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(p, "ucf-i3d")

    p = sub.add_parser("test", help="evaluate a checkpoint (ours or the authors' .pkl)", description=TEST_DESCRIPTION,
                       epilog=EXAMPLES_TEST, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_test_arguments(p, None)

    p = sub.add_parser("demo", help="synthetic UCF-format data -> CPU-sized training -> metrics and a score plot",
                       epilog=EXAMPLES_DEMO, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--steps", type=int, default=None, help="training iterations (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a --out folder whose data/ an earlier `adplg demo` did not write (default: "
                        "refuse, nothing is changed)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("presets", help="list the presets and what the improved ones change")
    p.add_argument("--diff", metavar="NAME", help="list what preset NAME changes against its faithful preset, one "
                                                  "key per line")
    p.add_argument("--against", metavar="OTHER", help="with --diff: compare with preset OTHER instead")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("config", help="every config key with its default (or a preset's value) and description")
    p.add_argument("--preset", help="show this preset's values instead of the defaults")
    p.set_defaults(func=cmd_config)

    from adplg.cli import doctor, export, extract, report, score, serve, watch

    extract.add_parser(sub)
    score.add_parser(sub)
    report.add_parser(sub)
    watch.add_parser(sub)
    serve.add_parser(sub)
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


def error_message(exc: AdplgError, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The error as the command line says it: a library parameter (``exc.parameter``) named by this command's flag
    (``queue_frames`` -> ``--queue-frames``, ``min_duration_s`` -> ``--min-duration``) where it has one."""
    if exc.parameter is None:
        return str(exc)
    option = option_for(parser, getattr(args, "command", None), exc.parameter)
    return exc.for_option(option) if option else str(exc)


class ParameterHints(logging.Filter):
    """A library warning's hint ``pass <parameter>=`` (logged with ``extra={"parameter": ...}``) as the command's
    flag: ``pass --fps``."""

    def __init__(self, parser: argparse.ArgumentParser, command: str | None):
        super().__init__()
        self.parser, self.command = parser, command

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``parameter=`` in a record that names one into this command's flag; keeps every record."""
        parameter = getattr(record, "parameter", None)
        option = option_for(self.parser, self.command, parameter) if parameter else None
        if option:
            record.msg, record.args = record.getMessage().replace(f"{parameter}=", option), None
        return True


def run(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Parse ``argv`` with ``parser`` and run its command; user errors are one line on stderr and status 2."""
    args = parse_args(parser, normalize_spellings(parser, argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    # this command's flags, while it runs: main() called from Python leaves later library warnings worded for the API
    hints = ParameterHints(parser, getattr(args, "command", None))
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(hints)
    try:
        return args.func(args)
    except AdplgError as exc:
        if args.verbose:
            raise
        print(f"{parser.prog}: error: {error_message(exc, parser, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        for handler in handlers:
            handler.removeFilter(hints)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``adplg``: parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit code."""
    return run(build_parser(), sys.argv[1:] if argv is None else list(argv))


def legacy_parser(script: str, preset: str, command: str) -> argparse.ArgumentParser:
    """The parser of an official script (``python xd_main.py``): ``command``'s arguments with ``preset`` as the
    default of ``--preset``, its own name in the usage line."""
    parser = argparse.ArgumentParser(
        prog=f"python {script}", description=f"The official command, the same as `adplg {command} --preset {preset}`"
        f"; --improved: `--preset {preset}-improved` (the improvement options, not the paper's), --preset another "
        f"preset" + (f". {TEST_DESCRIPTION}" if command == "test" else "."))
    add_verbose(parser)
    if command == "train":
        add_train_arguments(parser, preset)
    else:
        add_test_arguments(parser, preset, official=True)
    return parser


def legacy_entry(preset: str, command: str) -> None:
    """The official scripts' commands (``python ucf_main.py --thre_pesudo_a ...``) as thin wrappers."""
    sys.exit(run(legacy_parser(Path(sys.argv[0]).name, preset, command), sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
