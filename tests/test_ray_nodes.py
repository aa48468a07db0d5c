"""Ray clusters as processes: a local cluster that adplg starts ends with it, even when its driver is killed, and an
extraction on a two-node cluster (two raylets on this host, started with ``ray start``, one CPU each) that loses a
node part-way still extracts every video exactly once, bit-identical to a local run.

Every Ray process a test starts carries a marker in its environment (``ADPLG_TEST_RAY``, a fresh value per test), so
the test can tell its own processes from any other Ray on the machine, check that none outlives the run, and kill
what is left (by pid) when it ends. ``RAY_TMPDIR`` gives each test a fresh Ray folder (sessions, sockets, logs)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import torch
from backbone_weights import write_random_clip
from media import write_video
from shared_helpers import assert_same_extraction, free_port

pytest.importorskip("ray", reason="the Ray engine tests need `pip install adplg[ray]`")
pytest.importorskip("ray.data", reason="the Ray engine tests need Ray Data (`pip install adplg[ray]`)")
if not Path("/proc/self/stat").exists():
    pytest.skip("these tests find Ray's processes through /proc (Linux)", allow_module_level=True)

from adplg.engines import check_reachable, child_processes, process_start, process_tree  # noqa: E402
from adplg.errors import AdplgError  # noqa: E402
from adplg.features.extract import extract_many  # noqa: E402
from adplg.features.extractors import build_extractor  # noqa: E402

MARKER = "ADPLG_TEST_RAY"
VIDEOS = {f"Video{index:03d}_x264": frames for index, frames in enumerate((48, 40, 56, 34, 64, 44), start=1)}



def marked_processes(marker: str) -> list[int]:
    """The live processes whose environment holds ``MARKER=marker`` (this user's; others' are unreadable)."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def command_name(pid: int) -> str:
    """The process's program, or its title (Ray's workers and agents: "ray::DashboardAgent"); "" if it ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def kill_marked(marker: str) -> None:
    for pid in marked_processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_for(condition, timeout_s: float, what: str, step_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture()
def ray_env(monkeypatch):
    """A fresh Ray folder and process marker (this test's Ray processes inherit both); kills what is left."""
    folder = tempfile.mkdtemp(prefix="adplg-ray-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker, "RAY_TMPDIR": folder}
    env.pop("RAY_ADDRESS", None)
    try:
        yield env
    finally:
        kill_marked(marker)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------- no outliving processes
DRIVER = """
import sys, time
from pathlib import Path
from adplg.engines import RayEngine

def setup(device):
    def work(item):
        Path(item["flag"]).write_text("working")
        time.sleep(600)
        return {}
    return work

for record in RayEngine().map([{"video": "a", "flag": sys.argv[1]}], setup):
    pass
"""


@pytest.mark.slow
def test_a_local_cluster_started_by_adplg_ends_with_its_killed_driver(ray_env, tmp_path):
    """A driver killed with SIGKILL while its work runs (its own local cluster: RAY_ADDRESS=local) leaves no Ray
    process behind: not the GCS, the raylet, the workers, nor the DashboardAgent and RuntimeEnvAgent (which, left to
    themselves, outlive it for a minute)."""
    flag = tmp_path / "working"
    env = {**ray_env, "RAY_ADDRESS": "local"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(flag)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        def cluster_up() -> dict[int, int] | None:
            assert driver.poll() is None, driver.communicate()[0][-3000:]
            tree = process_tree([driver.pid])
            names = " ".join(command_name(pid) for pid in tree)
            wanted = ("raylet", "gcs_server", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::MapWorker")
            return tree if flag.exists() and all(name in names for name in wanted) else None

        tree = wait_for(cluster_up, 120, "the work and the cluster's agents to start")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        started = time.monotonic()

        def left() -> list[str]:
            alive = {pid for pid, start in tree.items() if process_start(pid) == start}
            return sorted(command_name(pid) for pid in alive | set(marked_processes(env[MARKER])))

        while left() and time.monotonic() < started + 30:
            time.sleep(0.2)
        assert not left(), f"still running 30 s after the driver was killed: {left()}"
        print(f"the cluster ended {time.monotonic() - started:.1f} s after its driver was killed")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


# ------------------------------------------------------------------------------------------- two nodes, one lost
def start_node(env: dict, *options: str) -> subprocess.Popen:
    """``ray start --block`` with one CPU (the node's processes are its children; SIGTERM stops them)."""
    command = [shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray", "start", "--block",
               "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
               "--object-store-memory", str(80 * 1024 * 1024), "--dashboard-agent-listen-port", str(free_port()),
               "--disable-usage-stats", *options]
    log = Path(env["RAY_TMPDIR"]) / f"ray-start-{free_port()}.log"  # shown when a node fails to start
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def raylet_of(node: subprocess.Popen) -> int | None:
    for pid in child_processes(node.pid):
        try:
            if b"raylet" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                return pid
        except OSError:
            continue
    return None


def runs_an_actor(raylet: int) -> bool:
    """Whether one of the raylet's worker processes runs an actor of the extraction (Ray names it "ray::...")."""
    for pid in child_processes(raylet):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::") and b"IDLE" not in title:
            return True
    return False


@pytest.fixture()
def two_nodes(ray_env):
    """A head and a second node on this host, one CPU each; yields (address, second node's ``ray start``, the
    environment of a driver)."""
    # a head started by `ray start` requires a token of the nodes and drivers that join it (Ray >= 2.59), kept in the
    # user's ~/.ray: this test's cluster, on 127.0.0.1 only, goes without; the GCS declares a silent node dead
    # after 3 failed health checks 1 s apart (Ray's default: 5, 3 s apart)
    env = {**ray_env, "RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "1000",
           "RAY_health_check_failure_threshold": "3"}
    port = free_port()
    head = start_node(env, "--head", "--port", str(port), "--include-dashboard", "false")
    nodes = [head]
    try:
        address = f"127.0.0.1:{port}"

        def head_log() -> str:
            return "".join(p.read_text()[-2000:] for p in Path(env["RAY_TMPDIR"]).glob("ray-start-*.log"))

        def head_answers() -> bool:
            assert head.poll() is None, f"the head node ended: {head_log()}"
            try:
                check_reachable(address, timeout_s=1)
            except AdplgError:
                return False
            return True

        wait_for(head_answers, 90, "the head node", step_s=0.5)
        second = start_node(env, "--address", address)
        nodes.append(second)

        def second_raylet() -> int | None:
            assert second.poll() is None, f"the second node ended: {head_log()}"
            return raylet_of(second)

        wait_for(second_raylet, 60, "the second node's raylet")
        yield address, second, env
    finally:
        for node in nodes:
            if node.poll() is None:
                node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()


@pytest.mark.slow
def test_extraction_on_two_nodes_survives_the_loss_of_one(two_nodes, tmp_path):
    address, second, env = two_nodes
    corpus = tmp_path / "videos"
    corpus.mkdir()
    for seed, (name, frames) in enumerate(VIDEOS.items()):
        write_video(corpus / f"{name}.mp4", frames, seed=seed)
    weights = write_random_clip(tmp_path / "ViT-B-16.pt", seed=0, width=32, layers=1)

    started = time.monotonic()
    out = tmp_path / "feats"
    command = [sys.executable, "-m", "adplg.cli.main", "extract", str(corpus), "--backbone", "clip", "--weights",
               str(weights), "--crops", "5", "--out", str(out), "--quiet", "--engine", "ray", "--address", address,
               "--workers", "2"]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    raylet = raylet_of(second)
    try:
        wait_for(lambda: driver.poll() is not None or (list((out / "meta").glob("*.json")) and runs_an_actor(raylet)),
                 120, "a first video done and an actor on the second node")
        assert driver.poll() is None, f"the run ended before the node was lost: {driver.communicate()[0][-3000:]}"
        os.kill(raylet, signal.SIGKILL)  # the second node is lost, its actor with it
        finished = {p.stem for p in (out / "meta").glob("*.json")}
        print(f"second node lost after {time.monotonic() - started:.1f} s, {len(finished)} video(s) done")
        output = driver.communicate(timeout=150)[0]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    print(f"run ended after {time.monotonic() - started:.1f} s, exit code {driver.returncode}:\n{output[-3000:]}")
    assert finished < set(VIDEOS), finished  # lost part-way
    done_first = {p.stem for p in (out / "meta").glob("*.json")}
    if driver.returncode == 0:  # the engine's retries finished the run: nothing failed, each video once
        assert f"extracted {len(VIDEOS)} video(s), skipped 0 finished, 0 failed" in output, output[-3000:]
        print("finished by the run itself:", "a second pass" if "lost with their worker's node" in output
              else "Ray's retries")
    else:  # some videos were given up in the node's loss (reported, not written): a re-run does exactly those
        assert driver.returncode == 1 and "died on it" in output, output[-3000:]
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
        left = len(VIDEOS) - len(done_first)
        assert f"extracted {left} video(s), skipped {len(done_first)} finished, 0 failed" in rerun.stdout, (
            rerun.stdout[-2000:] + rerun.stderr[-2000:])
        print(f"finished by a re-run ({left} video(s) given up in the loss), {time.monotonic() - started:.1f} s")

    local = tmp_path / "local"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each one-CPU Ray worker: bit-identical CPU results need the same thread count
    try:
        report = extract_many(corpus, build_extractor("clip", weights, crops=5, device="cpu"), local, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert report.done == sorted(VIDEOS)
    assert_same_extraction(out, local, videos=len(VIDEOS), crops=5)
    print(f"test took {time.monotonic() - started:.1f} s from the run's start")
