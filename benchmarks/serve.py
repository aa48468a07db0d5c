"""How many cameras one ``adplg serve`` process keeps up with (issue 28): N cameras played at real time (file
sources with ``realtime: true``, 320x240 at 30 fps by default), one shared backbone batched across cameras.

    python benchmarks/serve.py                                   # CLIP fp32 k=1 and I3D fp32 k=2, N = 1, 2, ...
    python benchmarks/serve.py --cases clip:fp32:1 --cameras 1 --seconds 10     # one quick run
    python benchmarks/serve.py --cases i3d:fp32:2 --max-cameras 4 --device cuda --out serve.json

For each case (backbone : precision : encode_every; random weights of the real sizes, CLIP ViT-B/16 and the full
I3D, and a random snippet branch of the matching size, 1 crop) the service runs N = 1, 2, ... cameras (each N in its
own process, so its memory is its own) until one is not held (or ``--max-cameras``); ``--cameras N ...`` runs those
counts only. Per run:

  held              no frame dropped and the p95 queue wait (lag) under one snippet (16 frames): the service keeps
                    pace with every camera (a file played in real time cannot run faster than 1.0x)
  x_realtime_min    the slowest camera's video seconds / wall seconds from its first frame to its last score
  dropped           frames dropped (all cameras)
  lag_p95_s         p95 over cameras of the last frame's queue wait, sampled every 0.2 s
  score_latency_p95 a snippet's last frame received -> its score final (includes the look-ahead delay)
  alert_latency_p95 what an alert starting at a snippet waits: the score latency + the snippet's other 15 frames
  rss_base_mib      resident memory with the model and the backbone loaded, no camera yet (/proc/self/status)
  rss_peak_mib      peak resident memory of the run (VmHWM)
  forwards          backbone forwards, and how many of them held snippets of several cameras

The largest held N of each case is printed last. CPU numbers depend on the machine's load: run it on an idle one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the random public-layout weights and the video writer of the tests
sys.path.insert(0, str(Path(__file__).resolve().parent))

SNIPPET = 16


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB, from /proc/self/status."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def run_case(video: Path, backbone: str, precision: str, encode_every: int, cameras: int, device: str,
             root: Path) -> dict:
    """N cameras on ``video`` in this process; the row described in the module docstring."""
    import numpy as np
    from watch import random_checkpoint, random_weights

    from adplg.service.config import parse_service_config
    from adplg.service.runner import Service

    config = parse_service_config({
        "checkpoint": str(random_checkpoint(root, backbone)), "weights": str(random_weights(root, backbone)),
        "device": device, "precision": precision, "encode_every": encode_every, "realtime": True,
        "snapshots": False, "outputs": str(root / f"out-{backbone}-{cameras}-{time.time_ns()}"),
        "http": {"enabled": False}, "rules": {"on_threshold": 0.5},
        "cameras": {f"cam{i}": str(video) for i in range(cameras)}})
    service = Service(config, say=lambda _: None)
    base_rss = rss_mib()[0]
    thread = threading.Thread(target=service.run, daemon=True)
    began = time.monotonic()
    thread.start()
    lags: list[float] = []
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    seen: dict[str, int] = {}
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        cams = list(service.cameras.values())
        for cam in cams:
            if cam.consumed and cam.name not in first:
                first[cam.name] = now
            if cam.report.snippets != seen.get(cam.name):
                seen[cam.name], last[cam.name] = cam.report.snippets, now
            if cam.state == "up":
                lags.append(cam.lag_s)
        if len(cams) == cameras and all(c.state in ("ended", "failed") for c in cams):
            break
        if now - began > 600:
            break
    all_ended = all(c.state == "ended" for c in service.cameras.values())  # before stop() changes the states
    service.stop()
    thread.join(60)
    cams = list(service.cameras.values())
    duration = max(c.consumed for c in cams) / max(c.loop.fps for c in cams if c.loop is not None)
    latencies = [x for c in cams for x in c.report.latencies_s]
    fps = cams[0].loop.fps if cams[0].loop is not None else 30.0
    dropped = sum(c.counters()["dropped"] for c in cams)
    lag_p95 = float(np.percentile(lags, 95)) if lags else float("nan")
    rtf = min(duration / max(last[c.name] - first[c.name], 1e-9) for c in cams if c.name in first)
    score_p95 = float(np.percentile(latencies, 95)) if latencies else float("nan")
    return {"backbone": backbone, "precision": precision, "encode_every": encode_every, "cameras": cameras,
            "device": str(service.extractor.device), "video_s": round(duration, 2), "fps": fps,
            "held": bool(dropped == 0 and lag_p95 < SNIPPET / fps and all_ended),
            "x_realtime_min": round(rtf, 3), "dropped": dropped, "lag_p95_s": round(lag_p95, 3),
            "score_latency_p95_s": round(score_p95, 3),
            "alert_latency_p95_s": round(score_p95 + (SNIPPET - 1) / fps, 3),
            "look_ahead_s": round(cams[0].report.latency_s, 3),
            "rss_base_mib": round(base_rss), "rss_peak_mib": round(rss_mib()[1]),
            "forwards": service.forwards, "multi_camera_forwards": service.multi_camera_forwards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["clip:fp32:1", "i3d:fp32:2"],
                        help="backbone:precision:encode_every (default clip:fp32:1 i3d:fp32:2)")
    parser.add_argument("--cameras", type=int, nargs="+", help="run these camera counts only")
    parser.add_argument("--max-cameras", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--case", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        video, backbone, precision, k, n, root = args.case
        print(json.dumps(run_case(Path(video), backbone, precision, int(k), int(n), args.device, Path(root))))
        return
    from watch import write_bench_video

    rows, best = [], {}
    with tempfile.TemporaryDirectory(prefix="adplg-serve-bench-") as tmp:
        root = Path(tmp)
        video = write_bench_video(root / "bench.mp4", args.seconds, args.fps, *args.size)
        for case in args.cases:
            backbone, precision, k = case.split(":")
            for n in args.cameras or range(1, args.max_cameras + 1):
                proc = subprocess.run([sys.executable, __file__, "--device", args.device, "--case", str(video),
                                       backbone, precision, k, str(n), str(root)], capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{case} N={n}: failed\n{proc.stderr[-3000:]}")
                    break
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
                if row["held"]:
                    best[case] = n
                elif not args.cameras:
                    break
    for case in args.cases:
        print(f"{case}: largest N held at real time with no dropped frames: {best.get(case, 0)}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
