"""``adplg extract``: I3D / CLIP snippet features from raw videos (see ``adplg.features.extract``; the output folder's
format: ``adplg.data.extraction``)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from adplg.conventions import BACKBONES, CLIP_FRAME_MODES, CROP_COUNTS, LIST_EXTENSIONS, NAMINGS
from adplg.errors import AdplgError

__all__ = ["add_parser", "add_engine_args", "engine_from_args", "run", "parse_shard", "EXAMPLES_EXTRACT"]

EXAMPLES_EXTRACT = """examples:
  # UCF-Crime style: 10-crop I3D, <name>.npy and <name>__1..__9.npy
  adplg extract /data/UCF_Crimes/Videos --backbone i3d --weights rgb_imagenet.pt --out feats/ucf-i3d

  # XD-Violence style: 5-crop I3D, <name>__0..__4.npy, on the GPU
  adplg extract /data/xd/videos --backbone i3d --weights rgb_imagenet.pt --crops 5 --naming xd \\
      --device cuda --out feats/xd-i3d

  # CLIP ViT-B/16, one crop, from a list of video paths, as the second of two parallel shards
  adplg extract videos.txt --backbone clip --weights ViT-B-16.pt --out feats/ucf-clip --shard 1/2

  # on a Ray cluster (pip install adplg[ray]): 8 workers with one GPU each; paths on a filesystem all nodes share
  adplg extract /nfs/videos --backbone i3d --weights /nfs/rgb_imagenet.pt --out /nfs/feats/i3d \\
      --engine ray --address head-node:6379 --workers 8 --gpus-per-worker 1

Each run writes <out>/manifest.json, <out>/meta/<name>.json per finished video and <out>/features.list.
A re-run skips finished videos; one with different feature settings in the same --out is refused, and so is a
folder that holds .npy files but no manifest.json of adplg extract (its files are never overwritten).
"""


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if match is None or not int(match.group(1)) < int(match.group(2)):
        raise AdplgError(f"--shard: expected i/n with 0 <= i < n, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and the Ray options (shared by ``extract`` and ``score``)."""
    from adplg.engines import ENGINES

    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="where the per-video work runs: local (this process, default) or ray (a Ray cluster; "
                        "pip install adplg[ray]; see docs/cluster.md)")
    p.add_argument("--address", default=None,
                   help="ray: the cluster's head, host:port (default: RAY_ADDRESS, else a cluster started with "
                        "`ray start` on this machine, else a new local one)")
    p.add_argument("--workers", type=int, default=None, help="ray: worker actors, each loads the backbone once "
                                                             "(default 1)")
    p.add_argument("--gpus-per-worker", dest="gpus_per_worker", type=float, default=None,
                   help="ray: GPUs per worker, fractions share a GPU (default 0: workers run on CPU)")
    p.add_argument("--cpus-per-worker", dest="cpus_per_worker", type=float, default=None,
                   help="ray: CPUs per worker, also its torch threads (default 1)")


def engine_from_args(args: argparse.Namespace):
    """None for ``--engine local``; a checked :class:`~adplg.engines.RayEngine` for ``--engine ray``
    (ray importable, options in range, ``--address`` reachable). Ray options without ``--engine ray`` are an
    error."""
    from adplg.engines import RayEngine, check_reachable, import_ray

    ray_flags = {"--address": args.address, "--workers": args.workers, "--gpus-per-worker": args.gpus_per_worker,
                 "--cpus-per-worker": args.cpus_per_worker}
    if args.engine != "ray":
        given = [flag for flag, value in ray_flags.items() if value is not None]
        if given:
            raise AdplgError(f"{', '.join(given)}: expected together with --engine ray, got --engine {args.engine}")
        return None
    import_ray()
    engine = RayEngine(address=args.address, workers=1 if args.workers is None else args.workers,
                       gpus_per_worker=0.0 if args.gpus_per_worker is None else args.gpus_per_worker,
                       cpus_per_worker=1.0 if args.cpus_per_worker is None else args.cpus_per_worker)
    if engine.address:
        check_reachable(engine.address)  # before loading anything: an unreachable cluster fails in seconds
    return engine


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``extract`` sub-command to an ``argparse`` sub-parser set."""
    p = subparsers.add_parser(
        "extract", help="I3D / CLIP snippet features from videos (one [T, D] .npy per crop)",
        description="Cut videos into 16-frame snippets and write one [T, D] float32 feature file per crop view.",
        epilog=EXAMPLES_EXTRACT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (searched recursively) or list files "
                        f"({'/'.join(LIST_EXTENSIONS)}, one path a line)")
    p.add_argument("--backbone", required=True, choices=tuple(BACKBONES))
    p.add_argument("--weights", required=True, type=Path,
                   help="i3d: pytorch-i3d rgb_imagenet.pt; clip: OpenAI CLIP ViT-B-16.pt")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--crops", type=int, choices=CROP_COUNTS, default=None,
                   help="crop views per snippet (default 10 for i3d, 1 for clip)")
    p.add_argument("--naming", choices=NAMINGS, default="ucf",
                   help="crop file names: ucf <name>.npy, <name>__k.npy; xd <name>__k.npy; sht <name>_k.npy "
                        "(default ucf)")
    p.add_argument("--shard", default="0/1", metavar="i/n", help="handle videos i, i+n, i+2n, ... (default 0/1)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--batch-snippets", dest="batch_snippets", type=int, default=8,
                   help="snippets per forward pass (default 8)")
    p.add_argument("--clip-frame", dest="clip_frame", choices=CLIP_FRAME_MODES, default="middle",
                   help="clip: encode the middle frame of each snippet, or average all 16 (default middle)")
    add_engine_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the extraction; 0 when every video succeeded, 1 when some failed, 2 when all failed (nothing was
    extracted: the inputs are wrong). Each failure is printed to stderr, naming the video and why."""
    from adplg.conventions import DEFAULT_CROPS
    from adplg.data.extraction import check_extract_folder
    from adplg.features.extract import extract_many
    from adplg.features.extractors import build_extractor

    shard = parse_shard(args.shard)
    engine = engine_from_args(args)
    crops = args.crops if args.crops is not None else DEFAULT_CROPS[args.backbone]
    # before loading the backbone: --out is writable, holds no foreign files, and no earlier run with other settings
    check_extract_folder(args.out, {"backbone": args.backbone, "crops": crops, "naming": args.naming,
                                    "clip_frame": args.clip_frame if args.backbone == "clip" else None})
    # with ray the workers load the backbone on their own devices; here it only gives the settings
    extractor = build_extractor(args.backbone, args.weights, crops, device="cpu" if engine else args.device,
                                batch_snippets=args.batch_snippets, clip_frame=args.clip_frame)
    report = extract_many([Path(p) for p in args.inputs], extractor, args.out, naming=args.naming, shard=shard,
                          progress=not args.quiet, engine=engine)
    per_worker = " per worker" if engine else ""
    speed = f", {report.snippets_per_second:.1f} snippets/s{per_worker}" if report.snippets else ""
    where = f" on {engine.describe()} in {report.wall_seconds:.1f} s" if engine else ""
    print(f"extracted {len(report.done)} video(s), skipped {len(report.skipped)} finished, "
          f"{len(report.failed)} failed{speed}{where}")
    for video, reason in report.failed:
        print(f"adplg: error: {video}: {reason}", file=sys.stderr)
    if report.feature_list is not None:
        print(f"feature list: {report.feature_list}")
    if report.ok:
        return 0
    return 2 if not report.done and not report.skipped else 1
