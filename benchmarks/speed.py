"""Speed and memory of adplg against a plain reference path, measured in the same run (same data, same machine).

    python benchmarks/speed.py                 # CPU (and the GPU when there is one), the official model sizes
    python benchmarks/speed.py --device cpu --train_steps 3 --eval_videos 20

Rows:
  train        iterations/s of the full synchronous step (batch 32 normal + 32 abnormal, T = 64, both branches).
               ours: pooled features resident on the device, blocked local attention, host-sync-free bookkeeping.
               reference: every crop read with np.load and pooled each step (as the official loader does),
               dense band attention.
  eval         scoring a test set of equal-length videos. ours: equal-length videos and crops batched, scores kept
               on the device. reference: one crop per forward, dense attention.
  long video   one forward of the snippet branch on the longest UCF test video (T = 6,749), 1 crop and 10 crops;
               peak memory from a fresh subprocess (CPU: peak RSS growth over the loaded model; GPU:
               max_memory_allocated).
  floor        that forward's floating-point work (matmuls and convolutions counted by torch's FlopCounterMode,
               plus 4 T^2 d per global attention layer) over this device's measured 4096^3 matmul rate, fp32 and
               bf16: no implementation of the same math can be faster than the floor.
The numbers are wall-clock on the machine that ran them: compare rows only within one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

LONGEST_UCF_TEST = 6749


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def long_video(device: str, attention: str, precision: str, crops: int, batch_snippets: int = 10**9) -> dict:
    """Runs in a fresh process: one forward at T = 6749; returns seconds and memory (GiB): ``peak_gib`` is the
    process peak during the forward (CPU: VmHWM after resetting it; GPU: max_memory_allocated), ``growth_gib`` the
    part above what was held before the forward (model, inputs)."""
    from adplg.models import SnippetBranch
    from adplg.precision import autocast

    def rss(field: str) -> int:  # bytes, from /proc/self/status (Linux)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        return 0

    dev = torch.device(device)
    torch.manual_seed(0)
    net = SnippetBranch(attention=attention).to(dev).eval()
    x = torch.randn(crops, LONGEST_UCF_TEST, 1024, device=dev)
    with torch.no_grad(), autocast(dev, precision):
        net(x[:, :256])  # warm-up (kernels, allocator)
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
            base = rss("VmRSS:")
        start = time.perf_counter()
        scores = torch.cat([net(chunk).float() for chunk in x.split(max(1, batch_snippets // x.shape[1]))])
        _sync(dev)
        seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else rss("VmHWM:")
    return {"seconds": seconds, "peak_gib": peak / 2**30, "growth_gib": (peak - base) / 2**30,
            "checksum": float(scores.mean())}


def run_long_video(device: str, attention: str, precision: str, crops: int, batch_snippets: int = 10**9,
                   timeout: int = 1800) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import speed; "
            f"print(json.dumps(speed.long_video({device!r}, {attention!r}, {precision!r}, {crops}, {batch_snippets})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        if proc.returncode in (-9, 137):
            return {"error": "killed: out of memory"}
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_data(root: Path, eval_videos: int):
    from adplg.data.synthetic import generate_synthetic_ucf

    return generate_synthetic_ucf(root, num_train_normal=32, num_train_abnormal=32, num_test_normal=eval_videos // 2,
                                  num_test_abnormal=eval_videos - eval_videos // 2, feature_dim=1024, crops=1,
                                  max_snippets=200, seed=0)


def train_speed(data, device: torch.device, reference: bool, steps: int, precision: str = "fp32") -> float:
    from adplg.config import build_config
    from adplg.data.datasets import build_train_set
    from adplg.data.features import resample_segments
    from adplg.training.engine import Trainer

    cfg = build_config("ucf-i3d", overrides=[f"data.list_dir={data.root}", "data.train_crops=1", "data.test_crops=1",
                                             "train.warm_up=0", "train.progress=false", f"train.device={device}",
                                             f"train.precision={precision}",
                                             f"model.attention={'dense' if reference else 'blocked'}"])
    train = build_train_set(cfg, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, train, None, Path(tmp), device=device)
        if reference:  # the official loader: np.load and pool every crop of the batch, every step
            def next_batch():
                idx = torch.cat([trainer.sampler_n.next(), trainer.sampler_a.next()])
                crops = [resample_segments(np.load(train.items[i].path), 64) for i in idx]
                return torch.from_numpy(np.stack(crops)).to(device), idx
            trainer.next_batch = next_batch
        trainer.train_step(1)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for step in range(2, steps + 2):
            logs = trainer.train_step(step)
        float(logs["loss_s"])  # wait for the last step
        _sync(device)
        return steps / (time.perf_counter() - start)


def eval_speed(data, device: torch.device, reference: bool) -> float:
    from adplg.config import build_config
    from adplg.data.datasets import build_test_set
    from adplg.evaluation.evaluate import predict_snippet_scores
    from adplg.models import SnippetBranch

    cfg = build_config("ucf-i3d", overrides=[f"data.list_dir={data.root}", "data.test_crops=1"])
    test = build_test_set(cfg, progress=False)
    torch.manual_seed(0)
    net = SnippetBranch(attention="dense" if reference else "blocked").to(device).eval()
    predict_snippet_scores(net, test, device, batch_snippets=1 if reference else 65536)  # warm-up
    start = time.perf_counter()
    predict_snippet_scores(net, test, device, batch_snippets=1 if reference else 65536)
    return time.perf_counter() - start


def forward_tflop(T: int = LONGEST_UCF_TEST) -> float:
    """TFLOP of one snippet-branch forward at length T (1 crop, the paper's sizes)."""
    from torch.utils.flop_counter import FlopCounterMode

    from adplg.models import SnippetBranch

    net = SnippetBranch().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.randn(1, T, 1024))
    layers = net.global_transformer.layers
    attention = sum(4 * T * T * layer.attn.heads * layer.attn.dim_head for layer in layers)  # QK^T and PV
    return (counter.get_total_flops() + attention) / 1e12


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 4096) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(3):
        a @ b
    _sync(device)
    return 3 * 2 * n ** 3 / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, plus cuda if present)")
    parser.add_argument("--train_steps", type=int, default=3)
    parser.add_argument("--eval_videos", type=int, default=20)
    parser.add_argument("--skip", nargs="*", default=[], choices=["train", "eval", "long", "floor"])
    args = parser.parse_args()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), args.eval_videos)
        for device in devices:
            dev = torch.device(device)
            if "train" not in args.skip:
                steps = args.train_steps if dev.type == "cpu" else 50
                ref, ours = train_speed(data, dev, True, steps), train_speed(data, dev, False, steps)
                rows.append((device, "train it/s, fp32", f"{ref:.3f}", f"{ours:.3f}", f"{ours / ref:.2f}x"))
                bf16 = train_speed(data, dev, False, steps, precision="bf16")
                rows.append((device, "train it/s, bf16 autocast", "", f"{bf16:.3f}", f"{bf16 / ref:.2f}x"))
            if "eval" not in args.skip:
                ref, ours = eval_speed(data, dev, True), eval_speed(data, dev, False)
                rows.append((device, f"eval {args.eval_videos} videos x 200 snippets, s", f"{ref:.3f}", f"{ours:.3f}",
                             f"{ref / ours:.2f}x"))
            if "long" not in args.skip:
                for crops in (1, 10):
                    ref = run_long_video(device, "dense", "fp32", crops)
                    ours = run_long_video(device, "blocked", "fp32", crops)
                    bf16 = run_long_video(device, "blocked", "bf16", crops)
                    runs = [("dense fp32 (reference)", ref), ("blocked fp32", ours), ("blocked bf16", bf16)]
                    if crops > 1:  # the eval.batch_snippets=16384 setting: 2 crops per forward
                        runs.append(("blocked fp32, batch_snippets=16384",
                                     run_long_video(device, "blocked", "fp32", crops, 16384)))
                    for name, r in runs:
                        if "error" in r:
                            rows.append((device, f"T=6749 x{crops}: {name}", "", r["error"][:60], ""))
                            continue
                        rows.append((device, f"T=6749 x{crops}: {name}, s / peak GiB (growth)", "",
                                     f"{r['seconds']:.3f} / {r['peak_gib']:.2f} ({r['growth_gib']:.2f})", ""))
            if "floor" not in args.skip:
                tflop = forward_tflop()
                for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                    rate = matmul_gflops(dev, dtype)
                    rows.append((device, f"T=6749 x1 floor, {name}: {tflop:.3f} TFLOP at {rate:.0f} GFLOP/s, s", "",
                                 f"{tflop * 1e3 / rate:.3f}", ""))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print("| device | measurement | reference | ours | speed-up |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
