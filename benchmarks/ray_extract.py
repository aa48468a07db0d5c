"""Local executor against ``--engine ray`` for ``adplg extract``, on the same videos, in one run:

    python benchmarks/ray_extract.py                                  # 8 written videos, random-weight I3D, 1 crop
    python benchmarks/ray_extract.py --videos 16 --crops 10 --weights rgb_imagenet.pt
    python benchmarks/ray_extract.py --inputs /data/videos --backbone clip --weights ViT-B-16.pt
    python benchmarks/ray_extract.py --inputs sample/ --weights rgb_imagenet.pt --crops 10 --device cuda \
        --gpus-per-worker 0.5                                        # on a GPU node: local on the GPU, Ray workers too

Rows (each into its own empty folder, after a warm-up extraction of one video in this process):
  local        the plain executor in this process, torch using every CPU of the machine
  ray 1 x C    one Ray worker with all C CPUs (the same thread count as local, so the same arithmetic)
  ray N x 1    N Ray workers with one CPU each (N = the machine's CPUs, capped at 2 by default)

Time is wall-clock from the call to the report, so Ray's rows include starting the workers (importing torch, loading
the backbone) but not starting the local cluster (``ray.init``, printed apart); with ``--repeats R`` the rows run R
times in turn (local, ray, ray, local, ...) and each row keeps its fastest run, which damps other load on the machine
(the load average is printed). ``ratio`` = local seconds / row seconds (> 1: faster than local).
``snippets/s/worker`` = snippets / the workers' summed extraction seconds, the per-worker throughput that
docs/cluster.md's capacity model starts from. Outputs are checked against local's: names, manifest, features
(bit-identical, else the largest absolute difference: CPU kernels reduce in an order that depends on the thread
count).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the random public-layout weights and the video writer of the tests


def compare(got: Path, want: Path) -> str:
    """"identical", "max abs diff x" (same names and manifest, features within float rounding) or what differs."""
    names = sorted(p.name for p in want.glob("*.npy"))
    if sorted(p.name for p in got.glob("*.npy")) != names:
        return "different files"
    if (got / "manifest.json").read_bytes() != (want / "manifest.json").read_bytes():
        return "different manifest"
    worst = max(float(np.abs(np.load(got / n) - np.load(want / n)).max()) for n in names)
    return "identical" if worst == 0 else f"max abs diff {worst:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="*", help="videos or folders (default: write --videos synthetic clips)")
    parser.add_argument("--videos", type=int, default=8, help="synthetic videos to write (default 8)")
    parser.add_argument("--snippets", type=int, default=6, help="16-frame snippets per synthetic video (default 6)")
    parser.add_argument("--size", default="320x240", help="synthetic frame size WxH (default 320x240)")
    parser.add_argument("--backbone", choices=("i3d", "clip"), default="i3d")
    parser.add_argument("--weights", help="real weights (default: random weights in the public layout)")
    parser.add_argument("--crops", type=int, default=1)
    parser.add_argument("--max-workers", dest="max_workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of every row, the fastest kept (default 2)")
    parser.add_argument("--device", default="cpu", help="the local row's device (default cpu)")
    parser.add_argument("--gpus-per-worker", dest="gpus_per_worker", type=float, default=0.0,
                        help="GPUs per Ray worker (default 0: CPU workers)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    import ray
    from backbone_weights import write_random_clip, write_random_i3d
    from media import write_video

    from adplg.engines import RayEngine
    from adplg.features.extract import collect_videos, extract_many
    from adplg.features.extractors import build_extractor

    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="adplg-ray-bench-") as tmp:
        tmp = Path(tmp)
        if args.inputs:
            videos = collect_videos([Path(p) for p in args.inputs])
        else:
            width, height = map(int, args.size.split("x"))
            (tmp / "videos").mkdir()
            videos = [write_video(tmp / "videos" / f"clip{i:03d}.mp4", 16 * args.snippets, width, height, seed=i)
                      for i in range(args.videos)]
        if args.weights:
            weights = Path(args.weights)
        elif args.backbone == "i3d":
            weights = write_random_i3d(tmp / "rgb_imagenet.pt")
        else:
            weights = write_random_clip(tmp / "ViT-B-16.pt", width=768, layers=12)
        extractor = build_extractor(args.backbone, weights, args.crops, device=args.device)
        extract_many(videos[:1], extractor, tmp / "warm-up", progress=False)

        rows: dict[str, dict] = {}

        def run(label: str, engine, repeat: int) -> None:
            out = tmp / f"{label.replace(' ', '_')}-{repeat}"
            start = time.perf_counter()
            report = extract_many(videos, extractor, out, progress=False, engine=engine)
            seconds = time.perf_counter() - start
            assert report.ok and len(report.done) == len(videos), report.failed
            if label in rows and rows[label]["seconds"] <= seconds:
                return
            rows[label] = {"row": label, "seconds": seconds, "snippets": report.snippets,
                           "snippets_per_s": report.snippets / seconds,
                           "snippets_per_s_per_worker": report.snippets_per_second,
                           "outputs": "reference" if engine is None else compare(out, tmp / "local-0")}

        load_before = os.getloadavg()
        start = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)  # Ray counts the GPUs
        ray_init_s = time.perf_counter() - start
        workers = min(cpus, args.max_workers)
        gpus = args.gpus_per_worker
        engines = {"local": None,
                   f"ray 1 x {cpus}": RayEngine(workers=1, cpus_per_worker=cpus, gpus_per_worker=gpus)}
        if workers > 1:
            engines[f"ray {workers} x 1"] = RayEngine(workers=workers, cpus_per_worker=1, gpus_per_worker=gpus)
        try:
            for repeat in range(args.repeats):
                for label, engine in engines.items():
                    run(label, engine, repeat)
        finally:
            ray.shutdown()
        load_after = os.getloadavg()

    local = rows["local"]["seconds"]
    print(f"{len(videos)} videos, {rows['local']['snippets']} snippets, {args.backbone} {args.crops} crop(s), "
          f"{'weights ' + args.weights if args.weights else 'random weights'}; {cpus} CPUs, torch "
          f"{torch.__version__}, ray {ray.__version__}; ray.init took {ray_init_s:.1f} s (not in the rows); "
          f"fastest of {args.repeats} run(s) per row; 1-min load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    print("| row | seconds | snippets/s | snippets/s/worker | ratio to local | outputs |")
    print("|---|---|---|---|---|---|")
    for r in rows.values():
        print(f"| {r['row']} | {r['seconds']:.1f} | {r['snippets_per_s']:.3f} | {r['snippets_per_s_per_worker']:.3f} "
              f"| {local / r['seconds']:.2f}x | {r['outputs']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": list(rows.values()), "ray_init_s": ray_init_s, "cpus": cpus,
                                               "load_average": [load_before, load_after]}, indent=2))


if __name__ == "__main__":
    main()
