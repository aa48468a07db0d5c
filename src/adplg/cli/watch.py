"""``adplg watch``: live scoring of a camera, a network stream or a file, with alerts as events; argument parsing over
:func:`adplg.live.watch.watch`.

Ctrl-C and SIGTERM stop cleanly: the scorer is flushed, open alerts are closed (an ``ended`` event), the outputs are
finished, and the exit status is 0; while the model and backbone still load, they exit at once with a message and
nothing written. A source that cannot be (re)connected after ``--max-retries`` attempts exits 2 with an error naming
it. The final line counts frames, snippets, drops, alerts, outages (reconnections and attempts apart), the webhook's
deliveries and the measured score latency.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from adplg.cli.common import add_alert_rule_args, rules_from_args
from adplg.conventions import BACKBONES, CROP_COUNTS

EXAMPLES = """examples:
  # an RTSP camera: events as JSON lines on stdout, timeline CSV, a JPEG per alert, alerts POSTed to a webhook
  adplg watch rtsp://cam1.local/stream --checkpoint ucf.safetensors --weights rgb_imagenet.pt \\
      --events - --csv cam1.csv --snapshots cam1-alerts --webhook http://alerts.local/hook
  # a local camera, CLIP model, alert rules calibrated for this camera
  adplg watch /dev/video0 --checkpoint xd-clip.safetensors --weights ViT-B-16.pt --alerts cam1.alerts.yaml
  # a recorded file played at its real frame rate, as a camera would deliver it
  adplg watch shop.mp4 --realtime --checkpoint ucf.safetensors --weights rgb_imagenet.pt --events shop.jsonl
"""


def add_parser(sub) -> None:
    """Add the ``watch`` subcommand and its options to ``sub`` (the subparsers of ``adplg``)."""
    p = sub.add_parser("watch", help="score a live camera / stream / file as it plays and raise alerts",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="rtsp:// or http(s):// URL, a camera device such as /dev/video0, or a video file")
    p.add_argument("--checkpoint", required=True, help="our .safetensors checkpoint or its run directory")
    p.add_argument("--weights", help="backbone weights (pytorch-i3d rgb_imagenet.pt or CLIP ViT-B-16.pt)")
    p.add_argument("--backbone", choices=tuple(BACKBONES),
                   help="backbone (default: from the checkpoint's feature size, 1024 i3d, 512 clip)")
    p.add_argument("--crops", type=int, default=1, choices=CROP_COUNTS,
                   help="crop views per snippet (default 1: live speed; the scores average the crops)")
    p.add_argument("--realtime", action="store_true",
                   help="play a file at its own frame rate (default: as fast as the scorer takes it)")
    p.add_argument("--window", type=int,
                   help="snippets of context the model sees (default 256; a causal model always sees its receptive "
                        "field + 1, scored incrementally, and ignores this)")
    p.add_argument("--delay", type=int,
                   help="snippets of look-ahead before a score is final (default: the model's largest local window "
                        "+ 1; a causal model: 0, its live scores equal the offline ones); latency = delay x 16 / fps "
                        "seconds")
    p.add_argument("--encode-every", dest="encode_every", type=int, default=1, metavar="K",
                   help="frame skipping for a slow CPU: run the backbone on every K-th snippet only, the others "
                        "reuse its features (default 1: every snippet; see docs/benchmarks.md for the AUC cost)")
    add_alert_rule_args(p, "alert rules YAML (default: the rules beside the checkpoint, else threshold 0.5)")
    p.add_argument("--events", help="alert events as JSON lines: a file (appended) or - for stdout")
    p.add_argument("--csv", dest="csv_path",
                   help="timeline CSV (snippet, start_s, end_s, score), appended as scores become final (an existing "
                        "file must have that header)")
    p.add_argument("--snapshots", help="folder for a JPEG of the first frame of every alert")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a --snapshots folder holding alert-*.jpg files that an earlier `adplg watch` did "
                        "not write (default: refuse, nothing is changed)")
    p.add_argument("--webhook", help="POST every event as JSON to this URL (background thread, retried)")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--webhook-secret-env", dest="webhook_secret_env", metavar="VAR",
                        help="sign every webhook POST: header X-Adplg-Signature: sha256=<HMAC-SHA256 of the body> "
                             "under the secret in this environment variable")
    secret.add_argument("--webhook-secret-file", dest="webhook_secret_file", metavar="FILE",
                        help="the same, the secret read from the first line of this file")
    p.add_argument("--queue-frames", type=int, default=256,
                   help="frames buffered between the reader and the scorer; when full, the oldest are dropped "
                        "(live sources) (default 256)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--max-retries", type=int, default=5,
                   help="failed reconnects in a row before giving up, with exponential backoff (default 5)")
    p.add_argument("--stall-timeout", type=float, default=10.0,
                   help="seconds without a frame before a live stream is reconnected (default 10)")
    p.add_argument("--backoff", type=float, default=0.5,
                   help="first reconnect wait in seconds, doubled per failure up to 30 s (default 0.5)")
    p.add_argument("--report", help="write the final report (counts, drops, latency) as JSON to this file")
    p.set_defaults(func=cmd_watch)


class _StoppedWhileLoading(BaseException):
    """SIGINT / SIGTERM before the watch began (model and backbone loading): unwinds the load (a BaseException, so
    no ``except Exception`` on the way swallows it)."""


def cmd_watch(args: argparse.Namespace) -> int:
    """``adplg watch``: score a live source as it plays and report alerts as they happen. Returns the exit code."""
    from adplg.alert_rules import check_number
    from adplg.errors import AdplgError
    from adplg.features.extractors import extractor_for_model
    from adplg.inference.scorer import load
    from adplg.io import atomic_write_text, check_output_file, check_output_owner
    from adplg.live.outputs import SNAPSHOT_NAMES, WatchOutputs, read_webhook_secret
    from adplg.live.sources import open_source
    from adplg.live.watch import check_delay, watch

    # every number and output is checked before the model loads or the source is opened; the numbers by watch()'s
    # parameter names, which adplg.cli.main.error_message turns into their flags (the alert rules: rules_from_args)
    if args.window is not None:
        check_number("watch", "window", args.window, low=1)
    if args.delay is not None:
        check_number("watch", "delay", args.delay, low=0)
        check_delay(args.delay, args.window)
    check_number("watch", "queue_frames", args.queue_frames, low=1)
    check_number("watch", "encode_every", args.encode_every, low=1)
    check_number("watch", "max_retries", args.max_retries, low=0)
    check_number("watch", "stall_timeout", args.stall_timeout, low=0, low_open=True)
    check_number("watch", "backoff_s", args.backoff, low=0)
    for path, what in ((args.report, "--report file"), (args.csv_path, "--csv file"), (args.events, "--events file")):
        if path and path != "-":
            check_output_file(path, what)
    if args.snapshots:
        check_output_owner(args.snapshots, "watch", SNAPSHOT_NAMES, what="--snapshots folder",
                           overwrite=args.overwrite)
    # the CSV's header, the URL
    WatchOutputs.check(args.events, args.csv_path, args.snapshots, args.webhook, args.overwrite)
    secret = read_webhook_secret(args.webhook_secret_env, args.webhook_secret_file)
    if secret is not None and not args.webhook:
        raise AdplgError("a webhook secret signs webhook POSTs: expected webhook too, got none",
                         parameter="webhook")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    src = open_source(args.source, stall_timeout=args.stall_timeout)  # a missing file: an error before loading
    stop = threading.Event()
    loading = [True]

    def on_signal(signum, _frame) -> None:
        stop.set()
        if loading[0]:
            raise _StoppedWhileLoading(signal.Signals(signum).name)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        try:
            scorer = load(args.checkpoint, device=args.device)
            rules, source = rules_from_args(args, scorer)
            scorer.check_rules(rules)
            say(f"alert rules: {source} (on {rules.on_threshold:.4f}, off {rules.off_threshold:.4f}, "
                f"min {rules.min_duration_s:g} s, merge gap {rules.merge_gap_s:g} s)")
            extractor = extractor_for_model(scorer.config.data.feature_dim, args.weights, backbone=args.backbone,
                                            crops=args.crops, device=scorer.device, video=src.name)
            loading[0] = False  # from here a signal only sets stop: the watch finishes its outputs
        except _StoppedWhileLoading as exc:
            say(f"adplg watch: stopped by {exc} while loading the model; nothing was written")
            return 0
        report = watch(src, scorer, extractor=extractor, realtime=args.realtime, window=args.window,
                       delay=args.delay, rules=rules, events=args.events, csv_path=args.csv_path,
                       snapshots=args.snapshots, webhook=args.webhook, webhook_secret=secret,
                       queue_frames=args.queue_frames,
                       device=args.device, max_retries=args.max_retries, stall_timeout=args.stall_timeout,
                       backoff_s=args.backoff, encode_every=args.encode_every, stop=stop, announce=say,
                       overwrite=args.overwrite)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(final_line(report))
    if args.report:
        atomic_write_text(args.report, json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


def final_line(report) -> str:
    """The last status line of ``adplg watch``: counts, outages, measured latency and the webhook's delivery."""
    lat = report.latency_percentiles()
    lat_text = (f", measured score latency (a snippet's last frame received -> its score final) p50 "
                f"{lat['p50']:.2f} s p95 {lat['p95']:.2f} s max {lat['max']:.2f} s" if lat else "")
    down_s = sum(o["down_s"] or 0.0 for o in report.outages)
    outages = (f", {len(report.outages)} outage(s) ({down_s:.1f} s down), {report.reconnections} reconnection(s) "
               f"in {report.reconnect_attempts} attempt(s)" if report.outages or report.reconnect_attempts else "")
    hook = report.webhook
    webhook = ""
    if hook:
        lost = hook.get("failed", 0) + hook.get("dropped", 0) + hook.get("unsent", 0)
        webhook = (f", webhook: {hook.get('sent', 0)} sent, {hook.get('failed', 0)} failed, "
                   f"{hook.get('dropped', 0)} dropped, {hook.get('unsent', 0)} unsent"
                   + (" (EVENTS LOST)" if lost else ""))
    return (f"stopped ({report.stopped_by}): {report.frames} frames, {report.snippets} snippets scored, "
            f"{report.dropped_frames} dropped, {sum(e['kind'] == 'started' for e in report.events)} alert(s)"
            f"{outages}{webhook}{lat_text}")
