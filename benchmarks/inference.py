"""Speed of the video -> alerts path, measured in one run (same video, same machine):

    python benchmarks/inference.py                         # CPU (the GPU when there is one)
    python benchmarks/inference.py --device cpu --snippets 4 --crops 1 10 --skip_export

Rows:
  extract      snippets/s of ``adplg extract`` for I3D and CLIP ViT-B/16 (random weights in the public layouts, the
               real architectures), per crop count: ours (``batch_snippets`` snippets per forward) against a
               reference that runs one snippet per forward, as common extraction scripts do; ratio = ours/reference.
  score        seconds to score a [crops, 6749, 1024] video (the longest UCF test video) with the paper's snippet
               branch and write its timeline (CSV, JSON, PNG).
  export       seconds to export the paper's snippet branch to ONNX and TorchScript, file size, and the largest
               |export - eager| at T = 37 and 1000.
The numbers are wall-clock on the machine that ran them; CPU times are indicative only.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the random public-layout weights and the video writer of the tests

LONGEST_UCF_TEST = 6749


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def extraction_rows(tmp: Path, device: torch.device, snippets: int, crop_counts: list[int]) -> list[dict]:
    from backbone_weights import write_random_clip, write_random_i3d
    from media import write_video

    from adplg.features.extractors import build_extractor

    video = write_video(tmp / "bench.mp4", 16 * snippets, width=320, height=240, fps=30)
    weights = {"i3d": write_random_i3d(tmp / "rgb_imagenet.pt"),
               "clip": write_random_clip(tmp / "ViT-B-16.pt", width=768, layers=12, fp16=True)}
    rows = []
    for backbone, path in weights.items():
        for crops in crop_counts:
            ours = build_extractor(backbone, path, crops, device=device, batch_snippets=8)
            reference = build_extractor(backbone, path, crops, device=device, batch_snippets=1)
            ours.video_features(video)  # warm-up
            t_ours = _timed(lambda e=ours: e.video_features(video), device)
            t_ref = _timed(lambda e=reference: e.video_features(video), device)
            rows.append({"row": "extract", "backbone": backbone, "crops": crops, "snippets": snippets,
                         "ours_snippets_per_s": snippets / t_ours, "reference_snippets_per_s": snippets / t_ref,
                         "ratio": t_ref / t_ours})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def score_row(tmp: Path, device: torch.device, crops: int) -> dict:
    from adplg.alert_rules import AlertRules
    from adplg.data.features import FeatureStore
    from adplg.data.lists import CropItem
    from adplg.inference.scorer import score_features
    from adplg.inference.timeline import Timeline, write_timeline
    from adplg.models.snippet_branch import SnippetBranch

    rng = np.random.default_rng(0)
    items = [CropItem(path=tmp / f"long__{c}.npy", video="long", crop=c, label=-1,
                      history_key=f"long__{c}") for c in range(crops)]
    store = FeatureStore(items, [rng.normal(size=(LONGEST_UCF_TEST, 1024)).astype(np.float32) for _ in items])
    net = SnippetBranch().to(device).eval()
    start = time.perf_counter()
    scores = score_features(net, store, device, batch_snippets=16384)["long"]
    scored = time.perf_counter() - start
    timeline = Timeline(name="long", snippet_scores=scores, fps=30.0, fps_source="--fps")
    write_timeline(tmp / "timeline", timeline, AlertRules())
    row = {"row": "score", "crops": crops, "T": LONGEST_UCF_TEST, "score_s": scored,
           "score_and_write_s": time.perf_counter() - start}
    print(json.dumps(row), flush=True)
    return row


def export_rows(tmp: Path) -> list[dict]:
    from adplg.deploy.export import check_export, export_onnx, export_torchscript
    from adplg.models.snippet_branch import SnippetBranch

    torch.manual_seed(0)
    net = SnippetBranch().eval()
    rows = []
    for fmt, export in (("torchscript", lambda p: export_torchscript(net, p)),
                        ("onnx", lambda p: export_onnx(net, p, feature_dim=1024))):
        path = tmp / f"ucf.{fmt}"
        start = time.perf_counter()
        export(path)
        seconds = time.perf_counter() - start
        check = check_export(path, net, lengths=(37, 1000), batch_sizes=(1,))
        rows.append({"row": "export", "format": fmt, "export_s": seconds, "mib": path.stat().st_size / 2**20,
                     "max_abs_diff": check["max_abs_diff_overall"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--snippets", type=int, default=8, help="snippets in the benchmark video")
    parser.add_argument("--crops", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--skip_export", action="store_true")
    parser.add_argument("--out", help="write all rows to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = extraction_rows(tmp, device, args.snippets, args.crops)
        rows.append(score_row(tmp, device, max(args.crops)))
        if not args.skip_export:
            rows += export_rows(tmp)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
