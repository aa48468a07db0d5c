"""The bad-input table (issue 14), `adplg watch`, `serve`, `doctor`, `demo`, `config` and the seed scripts."""

from __future__ import annotations

from bad_inputs_harness import CaseTable, Workspace, base_checkpoint, do  # noqa: F401 - base_checkpoint: the fixture

table = CaseTable()
case, cases = table.case, table.cases


# ---- watch (a file source, every number and output are checked before the model loads; an unreachable URL is
# found when connecting, after the model and backbone: tests/test_watch.py covers it with a model that has one)
def _watch(w: Workspace, *extra: str, source: str | None = None) -> list[str]:
    video = w.write("v/clip.mp4", b"")
    return ["watch", source or str(video), "--checkpoint", str(w.ckpt), "--weights", str(w.root / "clip.pt"),
            "--max-retries", "1", "--backoff", "0.01", *extra]


case("watch-source-missing")(lambda w: (_watch(w, source=str(w.root / "nope.mp4")), ["nope.mp4"]))
cases("watch-window", ["0", "-4"], lambda w, v: (_watch(w, "--window", v), ["window"]))
case("watch-delay-negative")(lambda w: (_watch(w, "--delay", "-1"), ["delay"]))
case("watch-threshold-nan")(lambda w: (_watch(w, "--threshold", "nan"), ["threshold"]))
case("watch-events-is-a-folder")(lambda w: (_watch(w, "--events", str(w.folder("events"))), [str(w.root / "events")]))
case("watch-csv-under-a-file")(lambda w: (_watch(w, "--csv", str(w.write("f", "x") / "t.csv")), [str(w.root / "f")]))
case("watch-checkpoint-missing")(lambda w: (["watch", str(w.write("v/clip.mp4", b"")), "--checkpoint",
                                             str(w.root / "no.safetensors")], ["no.safetensors"]))
case("watch-snapshots-hold-foreign-jpegs")(lambda w: (do(w.write("snaps/alert-0001-0000001.00s.jpg", b"mine"),
                                                         _watch(w, "--snapshots", str(w.root / "snaps"))),
                                                      [str(w.root / "snaps"), "alert-0001-0000001.00s.jpg",
                                                       "overwrite"]))

# ---- serve (`--check`: the config, the files and secrets it names, checked without starting the service)
def _serve(w: Workspace, text: str) -> list[str]:
    return ["serve", str(w.write("serve.yaml", f"checkpoint: {w.ckpt}\n{text}")), "--check"]


case("serve-config-missing")(lambda w: (["serve", str(w.root / "none.yaml"), "--check"], ["none.yaml"]))
case("serve-camera-key-misspelt")(lambda w: (_serve(w, "cameras:\n  garage: {source: a.mp4, encode_evry: 2}\n"),
                                             ["serve.yaml", "garage", "encode_every"]))
case("serve-open-http-without-token")(lambda w: (_serve(w, "http: {host: 0.0.0.0}\ncameras: {garage: a.mp4}\n"),
                                                 ["serve.yaml", "http.host", "token"]))
case("serve-delay-negative")(lambda w: (_serve(w, "delay: -1\ncameras: {garage: a.mp4}\n"), ["delay"]))
case("serve-checkpoint-missing")(lambda w: (["serve", str(w.write("s.yaml", f"checkpoint: {w.root / 'no.safetensors'}"
                                                                   "\ncameras: {garage: a.mp4}\n")), "--check"],
                                            ["s.yaml", "no.safetensors"]))
case("serve-token-file-missing")(lambda w: (_serve(w, f"http: {{token_file: {w.root / 'tok'}}}\n"
                                                      "cameras: {garage: a.mp4}\n"), [str(w.root / "tok")]))

# ---- doctor, demo, config
case("doctor-json-is-a-folder")(lambda w: (w.doctor("--json", str(w.folder("report"))), [str(w.root / "report")]))
case("doctor-list-dir-missing")(lambda w: (["doctor", "--preset", "demo-cpu-small", "--list_dir",
                                            str(w.root / "nodata")], [str(w.root / "nodata")]))
case("doctor-max-shown-negative")(lambda w: (w.doctor("--max_shown", "-1"), ["max_shown"]))
case("demo-out-is-a-file")(lambda w: (["demo", "--out", str(w.write("demo.txt", "x"))], ["demo.txt"]))
cases("demo-steps", ["0", "-5"], lambda w, v: (["demo", "--out", str(w.root / "demo"), "--steps", v],
                                              ["num_iters"]))
case("demo-out-holds-foreign-data")(lambda w: (do(w.write("demo/data/mine.txt", "x"),
                                                  ["demo", "--out", str(w.root / "demo"), "--steps", "3"]),
                                               [str(w.root / "demo"), str(w.root / "demo" / "data"), "overwrite"]))
case("config-unknown-preset")(lambda w: (["config", "--preset", "nope"], ["nope"]))

# ---- the official seed scripts (`python ucf_main.py ...`), in a subprocess as users run them
case("seed-script-train-bad-override", script="ucf_main.py")(lambda w: (["train.seed=[1"], ["train.seed"]))
case("seed-script-test-missing-model", script="xd_test.py")(
    lambda w: (["--model_file", str(w.root / "no.pkl")], ["no.pkl"]))


test_bad_input = table.pytest_test()
