"""Live scoring speed of ``adplg watch`` (issue 10): a file played as a camera, through the whole pipeline (reader
thread, bounded queue, backbone, online scorer, alerts).

    python benchmarks/watch.py                                   # 15 s of 320x240 at 30 fps, CLIP and I3D, fp32
    python benchmarks/watch.py --seconds 10 --backbones clip --precisions fp32 bf16 --device cpu
    python benchmarks/watch.py --backbones i3d --precisions fp32 --encode-every 1 2   # frame skipping (--encode-every)

Per backbone (random weights of the real sizes: CLIP ViT-B/16 width 768, 12 layers; the full InceptionI3d) and
precision, with a randomly initialised snippet branch of the matching feature size (``ucf-clip`` / ``ucf-i3d``
architecture, 1 crop), each case in its own process (so the peak memory is its own):

  throughput   seconds of video per second of wall clock when the file is read as fast as possible (x real time;
               >= 1 keeps up with a camera at this frame rate)
  latency      played in real time (``--realtime``): seconds from a snippet's last frame arriving to its score
               becoming final (p50 / p95); it includes the ``delay`` snippets of look-ahead (announced separately)
               and any queueing when the backbone is slower than real time
  dropped      frames the bounded queue (``--queue-frames``, default 256) dropped in the real-time run
  peak_rss     the process's peak resident memory (``resource.getrusage``, MiB)

bf16 is run only where autocast supports it on the device (CUDA with bf16, or CPU). CPU numbers are indicative
only (shared machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the random public-layout weights and the video writer of the tests

PRESET = {"clip": "ucf-clip", "i3d": "ucf-i3d"}


def write_bench_video(path: Path, seconds: float, fps: int, width: int, height: int) -> Path:
    """The benchmark's video: ``seconds`` of ``width`` x ``height`` at ``fps`` (mpeg4, a moving square)."""
    from media import write_video

    return write_video(path, int(round(seconds * fps)), width=width, height=height, fps=fps, seed=0)


def random_checkpoint(root: Path, backbone: str) -> Path:
    """A seeded random snippet branch of the ``ucf-clip`` / ``ucf-i3d`` architecture (1 crop) saved under ``root``."""
    import torch

    from adplg.checkpoints.format import save_checkpoint
    from adplg.config import build_config
    from adplg.models.build import build_snippet_branch, build_video_branch

    cfg = build_config(PRESET[backbone], overrides=["data.test_crops=1"])
    torch.manual_seed(0)
    return save_checkpoint(root / f"{backbone}-model", net_v=build_video_branch(cfg), net_s=build_snippet_branch(cfg),
                           step=0, config=cfg.to_dict())


def random_weights(root: Path, backbone: str) -> Path:
    """Random backbone weights of the real sizes (CLIP ViT-B/16, the full I3D) in the public layouts."""
    from backbone_weights import write_random_clip, write_random_i3d

    if backbone == "clip":
        return write_random_clip(root / "ViT-B-16.pt", seed=0, width=768, layers=12)
    return write_random_i3d(root / "rgb_imagenet.pt", seed=0)


def run_case(video: Path, backbone: str, precision: str, device: str, root: Path, encode_every: int = 1) -> dict:
    """One backbone, precision and frame-skipping setting in this process: as fast as possible, then in real
    time."""
    import adplg
    from adplg.alert_rules import AlertRules
    from adplg.features.extractors import build_extractor
    from adplg.live.watch import watch

    scorer = adplg.load(random_checkpoint(root, backbone), device=device)
    weights = random_weights(root, backbone)
    rules = AlertRules(on_threshold=0.5)
    extractor = build_extractor(backbone, weights, crops=1, device=scorer.device)
    start = time.perf_counter()
    fast = watch(video, scorer, extractor=extractor, rules=rules, precision=precision, encode_every=encode_every,
                 announce=lambda _: None)
    fast_wall = time.perf_counter() - start
    duration = fast.frames / fast.fps
    live = watch(video, scorer, extractor=extractor, rules=rules, precision=precision, realtime=True,
                 encode_every=encode_every, announce=lambda _: None)
    lat = live.latency_percentiles()
    return {"backbone": backbone, "precision": precision, "encode_every": encode_every,
            "device": str(scorer.device), "crops": 1,
            "video_s": round(duration, 2), "fps": fast.fps, "delay_snippets": fast.delay,
            "look_ahead_s": round(fast.latency_s, 3),
            "throughput_x_realtime": round(duration / fast_wall, 3),
            "snippets_per_s": round(fast.snippets / fast_wall, 2),
            "latency_p50_s": round(lat.get("p50", float("nan")), 3),
            "latency_p95_s": round(lat.get("p95", float("nan")), 3),
            "realtime_snippets_scored": live.snippets, "dropped_frames": live.dropped_frames,
            "frames_read": live.frames,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def bf16_ok(device: str) -> bool:
    """Whether autocast runs bf16 on ``device``."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return True  # CPU autocast supports bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--backbones", nargs="+", default=["clip", "i3d"], choices=["clip", "i3d"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--encode-every", type=int, nargs="+", default=[1], metavar="K",
                        help="frame skipping settings to run (adplg watch --encode-every K; default 1)")
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--case", nargs=5, metavar=("VIDEO", "BACKBONE", "PRECISION", "ROOT", "K"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        video, backbone, precision, root, k = args.case
        print(json.dumps(run_case(Path(video), backbone, precision, args.device, Path(root), int(k))))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="adplg-watch-bench-") as tmp:
        root = Path(tmp)
        video = write_bench_video(root / "bench.mp4", args.seconds, args.fps, *args.size)
        cases = [(b, p, k) for b in args.backbones for p in args.precisions for k in args.encode_every]
        for backbone, precision, k in cases:
            if precision == "bf16" and not bf16_ok(args.device):
                print(f"{backbone} bf16: skipped (not supported on {args.device})")
                continue
            proc = subprocess.run([sys.executable, __file__, "--device", args.device, "--case", str(video),
                                   backbone, precision, str(root), str(k)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{backbone} {precision} k={k}: failed\n{proc.stderr[-2000:]}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
