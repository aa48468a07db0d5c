"""Where per-video work runs: in this process (:class:`LocalEngine`, the default), or on a Ray cluster
(:class:`RayEngine`; ``--engine ray`` on the command line; ``pip install adplg[ray]``). Both satisfy :class:`Engine`.

Every engine runs the same unit of work, one item (a small JSON-serialisable dict: a video path, or one video's
feature files) -> a small record dict (video name, status, error, snippets, settings fingerprint...), both defined by
the caller (:func:`adplg.features.extract.extract_video`, :func:`adplg.inference.jobs.score_unit`). The caller also
passes the *setup*, ``setup(device) -> work``: called once per process that runs work, it loads what the work needs
(a backbone, a checkpoint) on ``device`` and returns ``work(item) -> record``. The work writes its own outputs
atomically, so frames and features never travel between processes: only the item goes to a worker and only the
record comes back. A caller's run is three steps, the same on every engine: plan (skip what is done), map, finish.

Local executor (:class:`LocalEngine`): the setup runs once in this process (an in-process setup may reuse what the
caller has loaded already: :attr:`Engine.in_process`), then the items are worked in order, a tqdm bar counting them.

Ray executor (:class:`RayEngine`): ``ray.data.from_items(items)`` (one block per item, so idle workers take the next
video) ``.map_batches(_RayWorker, compute=ActorPoolStrategy(size=workers), batch_size=1, num_cpus=..., num_gpus=...)``.
Each actor (:class:`_RayWorker`) builds its work function once (the backbone and checkpoint load in ``__init__``),
with ``torch.set_num_threads`` = its CPUs; with GPUs, its device is ``cuda`` (Ray sets ``CUDA_VISIBLE_DEVICES`` to
the GPUs it was given). Records stream back to the driver as videos finish, so a driver killed part-way leaves every
finished video's outputs complete, and a re-run skips them (that is the caller's plan step, the same for every
engine). Ray Data restarts an actor whose process died (on another node when its node was lost) and tries its item
again; a small counter actor (:class:`_Attempts`) bounds the worker processes one item is started in (on nodes
still alive) to ``TASK_RETRIES + 1``, after which the item gives no record; items whose blocks were lost with a node
are mapped again, in at most ``TASK_RETRIES`` more passes.

Cluster connection (:func:`ray_session`): inside a ``ray.init`` the caller already made (a notebook, the tests), that
cluster is used. Otherwise ``address=None`` lets Ray choose (``RAY_ADDRESS``, else a cluster started with ``ray start``
on this machine, else a new local one, stopped at the end); ``"host:port"`` (a head node's GCS port, 6379 by default)
is probed first (:func:`check_reachable`: a TCP connection, then the HTTP/2 handshake every gRPC server, the GCS
included, answers, each within ``CONNECT_TIMEOUT_S`` seconds), because ``ray.init`` keeps retrying an address that
does not answer for minutes; an address that fails the probe is an :class:`AdplgError` naming it. The processes of a
local cluster that ``ray.init`` starts for the run end with it, even when the driver is killed (:func:`start_reaper`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from adplg.errors import AdplgError

__all__ = ["ENGINES", "CONNECT_TIMEOUT_S", "REAPER_SCAN_S", "TASK_RETRIES", "Engine", "LocalEngine", "RayEngine",
           "WorkSetup", "check_ray_options", "check_reachable", "child_processes", "import_ray", "process_start",
           "process_tree", "ray_session", "reap_on_eof", "start_reaper", "worker_died"]

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
CONNECT_TIMEOUT_S = 5.0
TASK_RETRIES = 2  # tries again of an item whose worker process died on it
RAY_MISSING = ("the Ray engine (RayEngine, --engine ray) needs `pip install adplg[ray]` (Ray Data, "
               "ray[data] >= 2.50, < 2.61)")

# setup(device) -> work(item) -> record: called once in each process that runs work, it loads what the work needs (a
# backbone, a checkpoint) on ``device`` ("cpu", "cuda", "cuda:N") and returns the function that handles one item
WorkSetup = Callable[[str], Callable[[dict], dict]]


@runtime_checkable
class Engine(Protocol):
    """Where the per-item work of a run happens (see the module docstring)."""

    #: whether the work runs in this process: its setup may then use objects loaded here (need not be picklable)
    in_process: ClassVar[bool]

    @property
    def device(self) -> str:
        """The torch device the setup is given ("cpu", "cuda", "cuda:N")."""
        ...

    def describe(self) -> str:
        """Where the work runs, in words, for a report line ("this process (cpu)", "ray (2 worker(s) x 1 CPU(s))")."""
        ...

    def map(self, items: Sequence[dict], setup: WorkSetup, progress: bool = False,
            desc: str = "videos") -> Iterator[dict]:
        """The records of ``work(item)`` for the items (``work = setup(device)``, built once per process); an item
        whose process died on it too often gives no record. ``progress``: a bar counting the items."""
        ...


def _item_label(item: dict) -> str:
    """The item's video (a name or a path) as the bars show it."""
    return Path(str(item.get("video", ""))).name


@dataclass(frozen=True, kw_only=True)
class LocalEngine:
    """Run units of work in this process, in order, on ``device`` (the setup's argument; a setup that reuses a model
    loaded here keeps that model's device)."""

    in_process: ClassVar[bool] = True
    device: str = "cpu"

    def describe(self) -> str:
        """Where the work runs, for messages: ``this process (cpu)``."""
        return f"this process ({self.device})"

    def map(self, items: Sequence[dict], setup: WorkSetup, progress: bool = False,
            desc: str = "videos") -> Iterator[dict]:
        """Records of ``work(item)`` for every item, in the items' order, as each finishes; ``setup(self.device)``
        builds ``work`` once, before the first item (not at all for no items). ``progress``: a tqdm bar counting
        the items, the current one in the postfix. An exception of the work propagates (work functions record a
        bad input in their record instead)."""
        if not items:
            return
        from tqdm import tqdm

        work = setup(self.device)
        with tqdm(total=len(items), desc=desc, unit="video", disable=not progress, dynamic_ncols=True) as bar:
            for item in items:
                bar.set_postfix_str(_item_label(item), refresh=True)
                record = work(item)
                bar.update(1)
                yield record


def import_ray():
    """``ray`` with Ray Data, or an :class:`AdplgError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - ray without the [data] extra has no ray.data dependencies (pandas, pyarrow)
    except ImportError as exc:
        raise AdplgError(f"{RAY_MISSING}; importing it failed: {exc}") from None
    return ray


def check_ray_options(workers, gpus_per_worker, cpus_per_worker) -> None:
    """``workers`` an integer >= 1, ``gpus_per_worker`` a finite number >= 0, ``cpus_per_worker`` a finite
    number > 0; else an :class:`AdplgError` naming the parameter."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise AdplgError(f"expected an integer >= 1, got {workers!r}", parameter="workers")
    for name, value, low_ok in (("gpus_per_worker", gpus_per_worker, True),
                                ("cpus_per_worker", cpus_per_worker, False)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (value == 0 and not low_ok):
            raise AdplgError(f"expected a number {'>= 0' if low_ok else '> 0'}, got {value!r}", parameter=name)


@dataclass(frozen=True, kw_only=True)
class RayEngine:
    """Run units of work on a Ray cluster: ``workers`` actors with ``cpus_per_worker`` CPUs and ``gpus_per_worker``
    GPUs each (fractions share a GPU), on the cluster at ``address`` (see the module docstring)."""

    in_process: ClassVar[bool] = False
    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0

    def __post_init__(self):
        check_ray_options(self.workers, self.gpus_per_worker, self.cpus_per_worker)

    @property
    def device(self) -> str:
        """The workers' torch device."""
        return "cuda" if self.gpus_per_worker > 0 else "cpu"

    def describe(self) -> str:
        """One line for logs: the engine, its workers and their CPUs / GPUs."""
        gpus = f", {self.gpus_per_worker:g} GPU(s)" if self.gpus_per_worker else ""
        return f"ray ({self.workers} worker(s) x {self.cpus_per_worker:g} CPU(s){gpus})"

    def map(self, items: Sequence[dict], setup: WorkSetup, progress: bool = False,
            desc: str = "videos") -> Iterator[dict]:
        """Records of ``work(item)`` for every item, in the order they finish; ``setup`` (picklable: a module-level
        function or a ``functools.partial`` of one) builds ``work`` once per worker. Connects first (see
        :func:`ray_session`); nothing is started for no items.

        A worker process that dies (killed for memory, a crash in a decoder) is restarted and its item tried again,
        at most ``TASK_RETRIES`` times; an item that still kills its worker gives no record (the caller reports it)
        and the others go on. Items lost with a node (Ray Data drops the blocks it cannot finish) are mapped again,
        in at most ``TASK_RETRIES`` more passes."""
        if not items:
            return
        ray = import_ray()
        from tqdm import tqdm

        with ray_session(self.address):
            context = ray.data.DataContext.get_current()
            saved = context.enable_progress_bars, context.max_errored_blocks
            context.enable_progress_bars = False  # our bar below counts videos; Ray's counts blocks
            context.max_errored_blocks = -1  # one block per item: an item that kills its worker does not stop the rest
            attempts = ray.remote(num_cpus=0)(_Attempts).remote()
            try:
                pending = dict(enumerate(items))  # index -> item: those that gave no row yet
                with tqdm(total=len(items), desc=desc, unit="video", disable=not progress, dynamic_ncols=True) as bar:
                    # a pass gives no row for an item whose block was lost (its node died); the next pass tries
                    # those again, counting their tries on the same attempts counter
                    for _ in range(TASK_RETRIES + 1):
                        if not pending:
                            break
                        for row in self._run_pass(ray, pending, setup, attempts):
                            if pending.pop(int(row["index"]), None) is None:
                                continue  # given by an earlier pass already
                            bar.update(1)
                            if not row["record"]:  # given up: its worker died on it TASK_RETRIES + 1 times
                                continue
                            record = json.loads(row["record"])
                            bar.set_postfix_str(_item_label(record), refresh=False)
                            yield record
                        if pending:
                            log.warning("ray: %d item(s) lost with their worker's node; trying them again",
                                        len(pending))
            finally:
                context.enable_progress_bars, context.max_errored_blocks = saved
                ray.kill(attempts)


    def _run_pass(self, ray, pending: dict[int, dict], setup: WorkSetup, attempts) -> Iterator[dict]:
        """One Ray Data pass over the ``pending`` items (index -> item): rows ``{"index", "record"}`` as they come
        (record "" for an item given up)."""
        from ray.data import ActorPoolStrategy

        rows = [{"index": index, "item": json.dumps(item)} for index, item in pending.items()]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        # Ray Data's actors restart when their process dies and retry its task without limit (its defaults); the
        # attempts counter is what gives up on an item, within the current named arguments
        dataset = dataset.map_batches(
            _RayWorker, fn_constructor_args=(setup, self.device, self.cpus_per_worker, attempts),
            compute=ActorPoolStrategy(size=min(self.workers, len(rows))), batch_size=1, batch_format="numpy",
            num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker or None)
        yield from dataset.iter_rows()


class _Attempts:
    """A Ray actor (one per :meth:`RayEngine.map` call): which worker processes each item (by its index) has been
    started in. Counted by process, not by call: when a node is lost, Ray sends the calls queued on its actor again,
    possibly to the same still-running process before it ends, and that is no death caused by the item."""

    def __init__(self):
        self.started: dict[int, set[str]] = {}

    def start(self, index: int, process: str) -> int:
        """Note a start of item ``index`` in ``process`` ("node id:pid"); the number of processes it started in on
        the nodes alive now (a lost node took its processes down: that does not count against the item)."""
        import ray

        self.started.setdefault(index, set()).add(process)
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        return sum(1 for started in self.started[index] if started.split(":")[0] in alive)


class _RayWorker:
    """The callable-class actor of ``map_batches``: builds the work once, then handles one item per call (an empty
    record for an item started more than ``TASK_RETRIES + 1`` times: the earlier starts killed their process)."""

    def __init__(self, setup: WorkSetup, device: str, cpus: float, attempts):
        import torch

        torch.set_num_threads(max(1, int(cpus)))  # the actor's CPUs, not the node's
        self.work = setup(device)
        self.attempts = attempts
        self.process = f"{ray_node_id()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        records = []
        for index, item in zip(batch["index"], batch["item"], strict=True):
            starts = ray.get(self.attempts.start.remote(int(index), self.process))
            records.append(json.dumps(self.work(json.loads(item))) if starts <= TASK_RETRIES + 1 else "")
        return {"index": np.asarray(batch["index"]), "record": np.array(records, dtype=object)}


def ray_node_id() -> str:
    """The Ray node this process runs on (in a Ray worker)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def worker_died() -> str:
    """The error recorded for an item that gave no record (see :meth:`RayEngine.map`)."""
    return (f"no result: its Ray worker process died on it {TASK_RETRIES + 1} times (killed for using too much "
            "memory, a crash, or its node lost); see the Ray logs of its node (session_latest/logs under Ray's "
            "temporary folder)")


# ---------------------------------------------------------------------------------------------------------- connection
def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``"host:port"`` or ``"ray://host:port"``; None for Ray's words ("auto", "local")."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address.strip())
    return (match.group(1), int(match.group(2))) if match else None


# RFC 9113 section 3.4: the client connection preface, then an empty SETTINGS frame (length 0, type 4, flags 0,
# stream 0); a server's first frame is its SETTINGS frame
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_SETTINGS = 4


def _answers_http2(connection: socket.socket) -> bool:
    """Whether the peer answers the HTTP/2 preface with a SETTINGS frame (before the socket's timeout)."""
    connection.sendall(_HTTP2_PREFACE)
    header = b""
    while len(header) < 9:
        chunk = connection.recv(9 - len(header))
        if not chunk:
            return False
        header += chunk
    return header[3] == _HTTP2_SETTINGS


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """``address`` ("host:port" or "ray://host:port") accepts a TCP connection and answers the HTTP/2 handshake as
    a gRPC server (Ray's GCS and client server are) within ``timeout_s`` each; else :class:`AdplgError` naming it
    and what to check. Ray's words ("auto", "local") are left to Ray."""
    target = _host_port(address)
    if target is None:
        if address.strip() not in ("auto", "local"):
            raise AdplgError(f"expected host:port (the head node's GCS port, 6379 by default), ray://host:port, "
                             f"auto or local, got {address!r}", parameter="address")
        return
    start = time.perf_counter()
    try:
        connection = socket.create_connection(target, timeout=timeout_s)
    except OSError as exc:  # refused, unknown host, timed out...
        reason = f"{type(exc).__name__}: {exc or 'no answer'}"
    else:
        with connection:
            try:
                if _answers_http2(connection):
                    return
            except OSError:  # reset, or no answer within timeout_s
                pass
        reason = "the port accepts connections but does not answer as a gRPC server such as Ray's GCS"
    raise AdplgError(
        f"no Ray cluster reachable at {address} ({reason}, after {time.perf_counter() - start:.1f} s; "
        "expected the head node started with `ray start --head`): check that the head is running (`ray status` on "
        "it), the host name and port (the GCS port, 6379 unless `ray start --port` set another; not the dashboard's "
        "8265), and that no firewall blocks it", parameter="address") from None


@contextmanager
def ray_session(address: str | None = None):
    """Inside: connected to a Ray cluster (see the module docstring). A cluster this call started or connected to is
    shut down (disconnected) on exit; one the caller connected to stays."""
    ray = import_ray()
    if ray.is_initialized():
        if address:
            log.info("ray is already initialised in this process; address %s is not used", address)
        yield
        return
    if address:
        check_reachable(address)
    before = set(child_processes(os.getpid()))
    try:
        # quiet: Ray's own warnings at ERROR, and the workers' output (colored, prefixed log lines) not relayed;
        # a failed item's error travels back in its record and is reported by adplg
        ray.init(address=address or None, include_dashboard=False, logging_level=logging.ERROR,
                 configure_logging=True, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        cause = f"{type(exc).__name__}: {exc}"
        if address:
            raise AdplgError(f"could not connect to the Ray cluster at {address} ({cause}); expected the head node "
                             "started with `ray start --head`", parameter="address") from None
        raise AdplgError(f"ray: could not connect to a Ray cluster ({cause}; no address given: RAY_ADDRESS, else a "
                         "cluster started on this machine, else a new local one); start one with `ray start --head` "
                         "and pass its host:port as the address") from None
    started = [pid for pid in child_processes(os.getpid()) if pid not in before]  # a new local cluster's
    reaper = start_reaper(started) if started else None
    try:
        yield
    finally:
        ray.shutdown()
        if reaper is not None and reaper.stdin is not None:
            reaper.stdin.close()  # the reaper ends what ray.shutdown left (a killed driver closes it too)
            reaper.wait()


# ------------------------------------------------------------------------------------------------------ the reaper
# A Ray cluster that ray.init starts dies with its driver only in part: GCS and raylet get SIGKILL with it (Linux's
# parent-death signal), but the raylet's DashboardAgent and RuntimeEnvAgent then try to tell the dead GCS for 60 s,
# deaf to SIGTERM meanwhile. The reaper, a process of its own session, holds the read end of a pipe whose only write
# end is the driver's: when the driver ends (shutdown, exception, SIGKILL), it kills every process of the cluster.
REAPER_SCAN_S = 1.0  # how often the reaper lists the cluster's processes (workers come and go)


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot; with the pid, names one process), None if it has
    ended (a zombie included)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # from field 3 of proc(5) on; the name may hold spaces
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _parents() -> dict[int, int]:
    """Every live process (pid) -> its parent's pid, from /proc (Linux); empty elsewhere."""
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue  # ended while listed
    return parents


def child_processes(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux: /proc; an empty list where there is no /proc)."""
    return [child for child, parent in _parents().items() if parent == pid]


def process_tree(roots: Sequence[int]) -> dict[int, int]:
    """``roots`` and all their live descendants: pid -> start time (see :func:`process_start`)."""
    parents, tree, todo = _parents(), {}, list(roots)
    while todo:
        pid = todo.pop()
        start = process_start(pid)
        if start is None or pid in tree:
            continue
        tree[pid] = start
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def start_reaper(roots: Sequence[int]) -> subprocess.Popen:
    """A process (its own session: a Ctrl-C of the terminal does not reach it) that lists ``roots`` and their
    descendants every ``REAPER_SCAN_S`` seconds and, once its stdin (a pipe from this process) is closed or this
    process has ended, sends SIGKILL to every one of them still running (see :func:`reap_on_eof`)."""
    package_root = str(Path(__file__).resolve().parent.parent)
    tree = process_tree(roots)  # those alive now: the reaper might list them only after this process has died
    code = (f"import sys; sys.path.insert(0, {package_root!r}); from adplg.engines import reap_on_eof; "
            f"reap_on_eof({list(roots)!r}, {tree!r})")
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def reap_on_eof(roots: Sequence[int], known: dict[int, int]) -> None:
    """The reaper's body (see :func:`start_reaper`): ``known`` (pid -> start time) grows with the descendants of
    ``roots`` until stdin ends, then every process of ``known`` still running (same pid, same start time) gets
    SIGKILL."""
    closed = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        closed.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    known = dict(known)
    while not closed.wait(REAPER_SCAN_S):
        known.update(process_tree(roots))
    known.update(process_tree(roots))
    for pid, start in known.items():
        if process_start(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # ended meanwhile
