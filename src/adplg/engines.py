"""Where per-video work runs: in this process (the default), or on a Ray cluster (``--engine ray``, ``pip install
adplg[ray]``).

Both engines run the same unit of work, one video -> a small record dict (JSON-serialisable: video name, status,
error, snippets, settings fingerprint...), defined by the caller (:func:`adplg.features.extract.extract_video`, the
scoring work of :mod:`adplg.inference.score_jobs`). The work writes its own outputs atomically, so frames and features
never travel through Ray's object store: only the item (a video path) goes to a worker and only the record comes back.

Ray executor (:class:`RayEngine`): ``ray.data.from_items(items)`` (one block per video, so idle workers take the next
video) ``.map_batches(_RayWorker, compute=ActorPoolStrategy(size=workers), batch_size=1, num_cpus=..., num_gpus=...)``.
Each actor (:class:`_RayWorker`) builds its work function once (the backbone and checkpoint load in ``__init__``),
with ``torch.set_num_threads`` = its CPUs; with GPUs, its device is ``cuda`` (Ray sets ``CUDA_VISIBLE_DEVICES`` to
the GPUs it was given). Records stream back to the driver as videos finish, so a driver killed part-way leaves every
finished video's outputs complete, and a re-run skips them (that is the caller's plan step, the same for both
engines).

Cluster connection (:func:`ray_session`): inside a ``ray.init`` the caller already made (a notebook, the tests), that
cluster is used. Otherwise ``address=None`` lets Ray choose (``RAY_ADDRESS``, else a cluster started with ``ray start``
on this machine, else a new local one, stopped at the end); ``"host:port"`` (a head node's GCS port, 6379 by default)
is probed first (:func:`check_reachable`: a TCP connection, then the HTTP/2 handshake every gRPC server, the GCS
included, answers, each within ``CONNECT_TIMEOUT_S`` seconds), because ``ray.init`` keeps retrying an address that
does not answer for minutes; an address that fails the probe is an :class:`AdplgError` naming it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from adplg.errors import AdplgError

__all__ = ["ENGINES", "CONNECT_TIMEOUT_S", "RayEngine", "check_ray_options", "check_reachable", "import_ray",
           "ray_session", "worker_died"]

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
CONNECT_TIMEOUT_S = 5.0
TASK_RETRIES = 2  # tries again of an item whose worker process died on it
RAY_MISSING = "--engine ray needs `pip install adplg[ray]` (Ray Data, ray[data] >= 2.50)"

# setup(device) -> work(item) -> record: called once in each worker, it loads what the work needs (a backbone, a
# checkpoint) on ``device`` ("cpu" or "cuda") and returns the function that handles one item
WorkSetup = Callable[[str], Callable[[dict], dict]]


def import_ray():
    """``ray`` with Ray Data, or an :class:`AdplgError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - ray without the [data] extra has no ray.data dependencies (pandas, pyarrow)
    except ImportError as exc:
        raise AdplgError(f"{RAY_MISSING}; importing it failed: {exc}") from None
    return ray


def check_ray_options(workers, gpus_per_worker, cpus_per_worker) -> None:
    """``--workers`` an integer >= 1, ``--gpus-per-worker`` a finite number >= 0, ``--cpus-per-worker`` > 0."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise AdplgError(f"--workers: expected an integer >= 1, got {workers!r}")
    for flag, value, low_ok in (("--gpus-per-worker", gpus_per_worker, True),
                                ("--cpus-per-worker", cpus_per_worker, False)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (value == 0 and not low_ok):
            raise AdplgError(f"{flag}: expected a number {'>= 0' if low_ok else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class RayEngine:
    """Run units of work on a Ray cluster: ``workers`` actors with ``cpus_per_worker`` CPUs and ``gpus_per_worker``
    GPUs each (fractions share a GPU), on the cluster at ``address`` (see the module docstring)."""

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

    def map(self, items: list[dict], setup: WorkSetup, progress: bool = False,
            desc: str = "videos") -> Iterator[dict]:
        """Records of ``work(item)`` for every item, in the order they finish; ``setup`` (picklable: a module-level
        function or a ``functools.partial`` of one) builds ``work`` once per worker. Connects first (see
        :func:`ray_session`); nothing is started for no items.

        A worker process that dies (killed for memory, a crash in a decoder) is restarted and its item tried again,
        at most ``TASK_RETRIES`` times; an item that still kills its worker gives no record (the caller reports it)
        and the others go on."""
        if not items:
            return
        ray = import_ray()
        from ray.data import ActorPoolStrategy
        from tqdm import tqdm

        with ray_session(self.address):
            context = ray.data.DataContext.get_current()
            saved = context.enable_progress_bars, context.max_errored_blocks
            context.enable_progress_bars = False  # our bar below counts videos; Ray's counts blocks
            context.max_errored_blocks = -1  # one block per item: an item that kills its worker does not stop the rest
            try:
                dataset = ray.data.from_items([json.dumps(item) for item in items], override_num_blocks=len(items))
                dataset = dataset.map_batches(
                    _RayWorker, fn_constructor_args=(setup, self.device, self.cpus_per_worker),
                    compute=ActorPoolStrategy(size=min(self.workers, len(items))), batch_size=1,
                    batch_format="numpy", num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker or None,
                    max_restarts=-1, max_task_retries=TASK_RETRIES)
                with tqdm(total=len(items), desc=desc, unit="video", disable=not progress, dynamic_ncols=True) as bar:
                    for row in dataset.iter_rows():
                        record = json.loads(row["record"])
                        bar.set_postfix_str(str(record.get("video", "")), refresh=False)
                        bar.update(1)
                        yield record
            finally:
                context.enable_progress_bars, context.max_errored_blocks = saved


class _RayWorker:
    """The callable-class actor of ``map_batches``: builds the work once, then handles one item per call."""

    def __init__(self, setup: WorkSetup, device: str, cpus: float):
        import torch

        torch.set_num_threads(max(1, int(cpus)))  # the actor's CPUs, not the node's
        self.work = setup(device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [json.dumps(self.work(json.loads(item))) for item in batch["item"]]
        return {"record": np.array(records, dtype=object)}


def worker_died() -> str:
    """The error recorded for an item that gave no record (see :meth:`RayEngine.map`)."""
    return (f"no result: its Ray worker process died on it {TASK_RETRIES + 1} times (killed for using too much "
            "memory, or a crash); see the Ray logs of its node (session_latest/logs under Ray's temporary folder)")


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
            raise AdplgError(f"--address: expected host:port (the head node's GCS port, 6379 by default), "
                             f"ray://host:port, auto or local, got {address!r}")
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
        f"--address {address}: no Ray cluster reachable ({reason}, after {time.perf_counter() - start:.1f} s; "
        "expected the head node started with `ray start --head`): check that the head is running (`ray status` on "
        "it), the host name and port (the GCS port, 6379 unless `ray start --port` set another; not the dashboard's "
        "8265), and that no firewall blocks it") from None


@contextmanager
def ray_session(address: str | None = None):
    """Inside: connected to a Ray cluster (see the module docstring). A cluster this call started or connected to is
    shut down (disconnected) on exit; one the caller connected to stays."""
    ray = import_ray()
    if ray.is_initialized():
        if address:
            log.info("ray is already initialised in this process; --address %s is not used", address)
        yield
        return
    if address:
        check_reachable(address)
    try:
        ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"--address {address}" if address else "ray (no --address)"
        raise AdplgError(f"{where}: could not connect to a Ray cluster ({type(exc).__name__}: {exc}); start one "
                         "with `ray start --head` and pass its host:port") from None
    try:
        yield
    finally:
        ray.shutdown()
