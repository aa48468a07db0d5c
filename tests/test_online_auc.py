"""benchmarks/online_auc.py on a tiny demo run: the causal model's online row (c) equals its offline row (d), and
``--runs`` (finished runs, no training) gives the rows of the training path for the same runs."""

import re
import shutil
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import online_auc  # noqa: E402
from saved_runs import find_run, load_run  # noqa: E402

from adplg.errors import AdplgError  # noqa: E402

TINY_DATA = dict(num_train_normal=16, num_train_abnormal=16, num_test_normal=5, num_test_abnormal=5,
                 max_snippets=64, feature_dim=16, crops=1)
# average_from: the run scores with (and saves as net_s) the uniform weight average of steps 26-40, not the last
# step's weights, so loading the wrong branch changes the online rows
TINY_TRAINING = ["train.num_iters=40", "train.warm_up=20", "train.average_from=25"]


def without_seconds(results: dict) -> list[dict]:
    return [{name: {k: v for k, v in row.items() if k != "seconds"} for name, row in seed["rows"].items()}
            for seed in results["demo"]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The training path on tiny demo data (bidirectional and causal, seed 0), its runs kept in ``out``."""
    out = tmp_path_factory.mktemp("online_auc") / "runs"
    saved, online_auc.DEMO_DATA = online_auc.DEMO_DATA, TINY_DATA
    try:
        results = online_auc.main(["--seeds", "0", "--window", "32", "--out", str(out), *TINY_TRAINING])
    finally:
        online_auc.DEMO_DATA = saved
    return out, results


def test_causal_online_equals_offline(trained):
    _, results = trained
    rows = results["demo"][0]["rows"]
    online, offline = rows["causal online"], rows["causal offline"]
    assert online["delay"] == 0 and online["latency_s"] == 0
    assert online["auc"] == pytest.approx(offline["auc"], abs=1e-9)
    assert online["ap"] == pytest.approx(offline["ap"], abs=1e-9)
    for key, ttd in online["time_to_detect"].items():
        assert ttd["detected"] == offline["time_to_detect"][key]["detected"]
        assert ttd["median_s"] == pytest.approx(offline["time_to_detect"][key]["median_s"], nan_ok=True)
    assert rows["bidirectional online"]["delay"] > 0  # the bidirectional model needs look-ahead


def test_runs_give_the_training_paths_rows(trained, tmp_path):
    out, results = trained
    loaded = online_auc.main(["--seeds", "0", "--window", "32", "--runs", str(out), str(out),
                              "--json", str(tmp_path / "rows.json")])
    assert without_seconds(loaded) == without_seconds(results)
    assert (tmp_path / "rows.json").is_file()
    run_dirs = {row["run_dir"] for row in loaded["demo"][0]["rows"].values()}
    assert {Path(d).parent.name for d in run_dirs} == {"seed0-bidirectional", "seed0-causal"}


def test_loaded_branch_is_the_weight_average(trained):
    out, _ = trained
    run_dir, step = find_run(out, name="demo-cpu-small", seed=0, causal=True)
    assert step == 40
    run = load_run(run_dir, step)
    saved = load_file(str(run_dir / "checkpoints" / "last.safetensors"))
    loaded = run.model.state_dict()
    averaged = {k: v for k, v in saved.items() if k.startswith("net_s.")}
    trained_weights = {k[len("extra."):]: v for k, v in saved.items() if k.startswith("extra.net_s_train.")}
    assert averaged and trained_weights
    assert all(loaded[k[len("net_s."):]].equal(v) for k, v in averaged.items())
    assert any(not loaded[k[len("net_s_train."):]].equal(v) for k, v in trained_weights.items())


def test_missing_seed_names_the_folder(trained):
    out, _ = trained
    with pytest.raises(AdplgError, match="seed 1") as error:
        online_auc.main(["--seeds", "1", "--runs", str(out), str(out)])
    assert str(out) in str(error.value) and "demo-cpu-small seed 0" in str(error.value)  # what the folder holds


def test_unfinished_runs_are_passed_over_and_two_finished_are_ambiguous(trained, tmp_path):
    out, _ = trained
    run_dir, _ = find_run(out, name="demo-cpu-small", seed=0, causal=True)
    folder = tmp_path / "causal"
    shutil.copytree(run_dir, folder / "finished")
    shutil.copytree(run_dir, folder / "stopped")
    shutil.rmtree(folder / "stopped" / "evals" / "step_40")
    assert find_run(folder, name="demo-cpu-small", seed=0, causal=True) == (folder / "finished", 40)
    with pytest.raises(AdplgError, match="not a folder|no such folder"):
        find_run(tmp_path / "absent", name="demo-cpu-small", seed=0, causal=True)
    with pytest.raises(AdplgError, match="found none"):  # a causal run is not the bidirectional one
        find_run(folder, name="demo-cpu-small", seed=0, causal=False)
    shutil.rmtree(folder / "finished" / "evals" / "step_40")
    with pytest.raises(AdplgError, match="2 unfinished.*evals/step_40"):
        find_run(folder, name="demo-cpu-small", seed=0, causal=True)
    shutil.copytree(run_dir, folder / "a")
    shutil.copytree(run_dir, folder / "b")
    ambiguous = f"{folder}: expected one finished run of demo-cpu-small seed 0, causal, found 2: a, b"
    with pytest.raises(AdplgError, match=re.escape(ambiguous)):
        find_run(folder, name="demo-cpu-small", seed=0, causal=True)


def test_runs_refuse_overrides_and_training_options(tmp_path):
    for extra in (["train.num_iters=5"], ["--num-iters", "5"], ["--grid"]):
        with pytest.raises(SystemExit):
            online_auc.main(["--runs", str(tmp_path), str(tmp_path), *extra])
    with pytest.raises(SystemExit):
        online_auc.main(["--r1", "--runs", str(tmp_path), str(tmp_path)])  # both data sets
