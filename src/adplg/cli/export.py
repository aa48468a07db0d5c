"""``adplg export``: the scoring branch of a checkpoint -> an ONNX or TorchScript file with a JSON sidecar, checked
against the eager model by default."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from adplg.errors import AdplgError

EXAMPLES = """examples:
  adplg export --checkpoint runs/ucf-i3d-seed42-.../checkpoints/step_20000.safetensors --format onnx
  adplg export --checkpoint runs/ucf-i3d-seed42-... --format torchscript --out deploy/ucf.ts
  adplg export --checkpoint ucf_model_s_best.pkl --preset ucf-i3d --format onnx --out deploy/ucf.onnx

The sidecar <out>.json records the input/output names and shapes, feature_dim, max_len, snippet frames, test crops,
the config and the source checkpoint's sha256. Inputs must have time <= max_len. Alert thresholds are not part of
the exported graph.
The export is written to a temporary name, checked there, and only then renamed over --out: a failed check leaves
a file already at --out unchanged.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("export", help="export the scoring branch to ONNX or TorchScript", epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="our .safetensors checkpoint (with its .json), a run directory, or an official *_model_s_*.pkl")
    p.add_argument("--format", required=True, metavar="{onnx,torchscript}", help="export format")
    p.add_argument("--out", help="output file, or a folder for <stem>.onnx / <stem>.ts "
                                 "(default: beside the checkpoint)")
    p.add_argument("--preset", help="preset replacing the checkpoint's config (needed for official .pkl files; "
                                    "default ucf-i3d there)")
    p.add_argument("--config", help="a YAML file merged over the config")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", dest="no_check", action="store_true",
                   help="skip running the export against the eager model")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest allowed |export - eager|, a finite number > 0 (default 1e-4)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="dotted config overrides")
    p.set_defaults(func=run)
    return p


def _output_path(out: str | None, checkpoint: Path, fmt: str) -> Path:
    """``--out`` as a file path: a folder (existing, or written with a trailing slash) gets ``<stem>.onnx`` /
    ``<stem>.ts`` inside it; no ``--out``: that name beside the checkpoint."""
    from adplg.checkpoints.format import checkpoint_file
    from adplg.deploy.export import SUFFIXES

    source = checkpoint_file(checkpoint)
    name = source.stem + SUFFIXES[fmt]
    if out is None:
        return source.parent / name
    path = Path(out)
    return path / name if path.is_dir() or out.endswith(("/", os.sep)) else path


def run(args: argparse.Namespace) -> int:
    """Validate the arguments and the output path, load the scoring branch, export it to a temporary name, check it
    (unless ``--no-check``) and only then rename it over ``--out``; print where everything went."""
    from adplg.checkpoints.load import load_snippet_branch
    from adplg.deploy.export import (
        check_export_target,
        check_format,
        check_tolerance,
        export_checked,
        require_onnx_packages,
        sidecar_path,
    )

    fmt = check_format(args.format)
    atol = check_tolerance(args.atol, "atol")
    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise AdplgError(f"checkpoint not found: {checkpoint} (expected a .safetensors checkpoint with its .json "
                         f"sidecar, a run directory, or an official *_model_s_*.pkl)")
    out = check_export_target(_output_path(args.out, checkpoint, fmt))
    if fmt == "onnx":
        require_onnx_packages()
    cfg, net_s = load_snippet_branch(checkpoint, args.preset, args.config, list(args.overrides))
    result = export_checked(net_s, out, fmt, opset=args.opset, config=cfg, source=checkpoint,
                            check=not args.no_check, atol=atol)
    print(f"exported {fmt}: {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    print(f"sidecar: {sidecar_path(out)}")
    if result is None:
        print("check skipped (--no-check)")
        return 0
    shown = ", ".join(f"{k}: {v:.2g}" for k, v in result["max_abs_diff"].items())
    print(f"check passed: max |export - eager| = {result['max_abs_diff_overall']:.2g} <= {atol:g} ({shown})")
    return 0
