"""``adplg doctor [DATA]``: validate a feature folder against its lists and annotations and print one report. A
folder written by ``adplg extract`` (it holds ``manifest.json``) is checked against its manifest and meta records
instead (``adplg.doctor.checks.diagnose_extraction``); the preset, lists and overrides do not apply there.

Exit status 0 when no errors were found (warnings allowed unless ``--strict``), 1 otherwise; user errors (unknown
preset, bad override...) raise ``AdplgError``, which ``adplg``'s main turns into a message and status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adplg.errors import AdplgError

EXAMPLES = """examples:
  adplg doctor /data/UCF-10Crop --preset ucf-i3d --list_dir ADPLG-VAD/list
  adplg doctor /data/XD-I3D --preset xd-i3d --list_dir ADPLG-VAD/list --split test --json xd-doctor.json
  adplg doctor /data/SH-I3D --preset sht-i3d --list_dir ADPLG-VAD/list data.gt_file=/data/sh-gt.npy
  adplg doctor runs/demo/data --preset demo-cpu-small   # a folder that holds its lists (here: what `adplg demo` wrote)
  adplg doctor features/cam1        # a folder written by `adplg extract` (manifest.json, meta/, features.list)
"""

SPLIT_CHOICES = {"train": ("train",), "test": ("test",), "both": ("train", "test")}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``doctor`` on an ``add_subparsers()`` object; the parsed args carry ``func=run``."""
    p = subparsers.add_parser(
        "doctor", help="check a feature folder against its lists and annotations (one report of every problem)",
        description="Validate every crop file of the lists (missing, truncated, unreadable, wrong shape or feature "
                    "dimension, NaN/Inf), the crops of every video, the snippet counts and the test GT, and print "
                    "one report. Exit status 0 when healthy, 1 when errors were found.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="the folder of the lists when it holds the preset's list files (same as --list_dir), else "
                        "the feature folder (same as --feature_root)")
    p.add_argument("--preset", default="ucf-i3d", help="dataset/feature preset (see `adplg presets`); default ucf-i3d")
    p.add_argument("--config", help="a YAML file merged over the preset")
    p.add_argument("--feature_root", help="sets data.feature_root (the folder the list paths are re-rooted onto)")
    p.add_argument("--list_dir", help="sets data.list_dir (where the list and annotation files are)")
    p.add_argument("--split", choices=sorted(SPLIT_CHOICES), default="both", help="which split(s) to check")
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON to FILE")
    p.add_argument("--max_shown", "--max-shown", type=int, default=10, metavar="N",
                   help="problems shown per kind (default 10)")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="dotted config overrides")
    p.set_defaults(func=run)
    return p


def _split_data_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """Argparse gives the first bare word to DATA; a ``key=value`` word that is not an existing path is an
    override instead."""
    data, overrides = args.data, list(args.overrides)
    if data is not None and "=" in data and not Path(data).exists():
        return None, [data, *overrides]
    return data, overrides


def holds_lists(folder: str, args: argparse.Namespace, overrides: list[str]) -> bool:
    """Whether ``folder`` holds a list file of the config (``data.train_list`` / ``data.test_list`` of the preset,
    ``--config`` and the overrides, given as names relative to the list folder)."""
    from adplg.config import DataConfig, settings

    data = settings(args.preset, args.config, overrides).get("data") or {}
    names = [data.get(key, DataConfig.model_fields[key].default) for key in ("train_list", "test_list")]
    return any(isinstance(name, str) and not Path(name).is_absolute() and (Path(folder) / name).is_file()
               for name in names)


def data_folders(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(list_dir, feature_root)`` from DATA, ``--list_dir`` and ``--feature_root``.

    DATA is the list folder (``data.list_dir``) when it holds the config's list files and no other ``--list_dir`` is
    given (``adplg doctor runs/demo/data --preset demo-cpu-small``), or when it is ``--list_dir`` itself; otherwise
    it is the feature folder (``data.feature_root``) the list paths are re-rooted onto, as ``--feature_root``."""
    data, overrides = _split_data_and_overrides(args)
    if data is None:
        return args.list_dir, args.feature_root
    if args.list_dir is None and holds_lists(data, args, overrides):
        return data, args.feature_root
    if args.list_dir is not None and Path(data).resolve() == Path(args.list_dir).resolve():
        return args.list_dir, args.feature_root
    if args.feature_root is not None and Path(data) != Path(args.feature_root):
        raise AdplgError(f"doctor: DATA ({data}) and --feature_root ({args.feature_root}) disagree; give one of them")
    return args.list_dir, data


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The dotted overrides of the command line, DATA / --feature_root / --list_dir included (see
    :func:`data_folders`)."""
    list_dir, feature_root = data_folders(args)
    flags = []
    if feature_root is not None:
        flags.append(f"data.feature_root={feature_root}")
    if list_dir is not None:
        flags.append(f"data.list_dir={list_dir}")
    return flags + _split_data_and_overrides(args)[1]


def run(args: argparse.Namespace) -> int:
    """Diagnose, print the report, optionally write JSON; 0 when healthy, 1 when problems were found."""
    from adplg.config import build_config
    from adplg.data.extraction import is_extraction_folder
    from adplg.doctor.checks import diagnose, diagnose_extraction
    from adplg.doctor.report import format_report

    if args.max_shown < 1:
        raise AdplgError(f"doctor: --max_shown must be >= 1, got {args.max_shown}")
    if args.json:  # before the (long) diagnosis: the report file can be written
        from adplg.io import check_output_file

        check_output_file(args.json, "doctor --json")
    folder = _split_data_and_overrides(args)[0] or args.feature_root
    if folder is not None and is_extraction_folder(folder):
        report = diagnose_extraction(folder, progress=not args.quiet)
    else:
        cfg = build_config(args.preset, args.config, config_overrides(args))
        for key in ("list_dir", "feature_root"):  # a folder that is not there: nothing to diagnose
            given = getattr(cfg.data, key)
            if given is not None and not Path(given).is_dir():
                raise AdplgError(f"doctor: data.{key} {given}: expected a folder, got "
                                 f"{'a file' if Path(given).exists() else 'nothing (no such folder)'}")
        report = diagnose(cfg, SPLIT_CHOICES[args.split], progress=cfg.train.progress and not args.quiet)
    print(format_report(report, max_shown=args.max_shown))
    if args.json:
        _write_json(Path(args.json), report.to_dict())
        print(f"JSON report: {args.json}")
    failed = not report.healthy or (args.strict and report.num_warnings > 0)
    return 1 if failed else 0


def _write_json(path: Path, payload: dict) -> None:
    from adplg.io import atomic_write_text

    try:
        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    except OSError as exc:
        raise AdplgError(f"doctor: cannot write the JSON report to {path}: {exc}") from None
