"""The one place ftdojo touches Ray's actor API.

Actor logic lives in plain classes (``actors/``, ``ftdojo.dojo``) that unit
tests build directly. Each has a small typed ``Handle`` beside it (the
pattern of Ray's ``util/queue.py``: a plain class plus a thin wrapper), whose
methods name the class's own methods, so ``await curator.curate(plan)`` reads
and navigates like a local call whether the peer is a plain object or a Ray
actor. ``Spawner`` creates a run's peers and returns their handles:
in-process (``local``) or as Ray actors (``ray``), the latter with
``num_cpus=0`` because they live inside the CPU share that the run's
supervisor already holds.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from ftdojo.errors import FtdojoError

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    # Ray Train otherwise waits for a 2 s controller poll on every report.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60",
    "RAY_DEDUP_LOGS": "0",
    # While any run waits for CPUs, the raylet asks every worker for a full gc.collect() every 10 s to
    # free actor handles caught in cycles; over a loaded model each costs ~1 s of an idle actor's CPU
    # (bench/idle_gc.py). The bench kills each finished run itself, so once an hour is plenty.
    "RAY_local_gc_min_interval_s": "3600",
}


async def call(target: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``method`` on a plain object or a Ray actor handle and await the result."""
    fn = getattr(target, method)
    if hasattr(fn, "remote"):
        try:
            return await fn.remote(*args, **kwargs)
        except Exception as e:
            raise _cause(e) from None
    result = fn(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


def _cause(e: Exception) -> Exception:
    """The peer's own typed error out of Ray's wrapper (whose text is a multi-line traceback), so a
    caller sees ``SandboxViolation('network', …)`` from an actor exactly as from a plain object."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, FtdojoError) else e


def warm(*modules: str) -> None:
    """Import heavy modules on a background thread, so a fresh actor process pays for them while
    its run is busy elsewhere (curating, starting peers) rather than on its first real call."""
    import importlib
    import threading

    def run() -> None:
        for m in modules:
            try:
                importlib.import_module(m)
            except Exception:  # noqa: BLE001 - a failed warm-up just means the real call imports it
                pass

    threading.Thread(target=run, name="ftdojo-warm", daemon=True).start()


def init_ray(address: str | None = None, num_cpus: int | None = None) -> dict[str, float]:
    """Connect to ``address`` (or RAY_ADDRESS), else start a local cluster; return its resources."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    import ray

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
            reap_with_me()
    return dict(ray.cluster_resources())


def reap_with_me() -> None:
    """Start a watchdog that kills this process's descendants once it is gone, however it dies.

    A local cluster's GCS and raylet share the driver's fate, but the raylet's own children (the
    dashboard and runtime-env agents) outlive a SIGKILLed driver, reparented to PID 1. The watchdog
    holds the read end of a pipe only this process writes to: end of file means the driver is gone.
    Until then it notes the driver's descendants every second (``psutil`` identities, so a reused
    PID is never killed); then it kills every one of them still running."""
    import subprocess
    import sys

    subprocess.Popen(
        [sys.executable, "-c", "from ftdojo.runtime import _reap; _reap()", str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # the pipe's write end stays open in this process (not inherited by others) until it exits


def _reap() -> None:
    import select
    import sys

    import psutil

    driver, me = psutil.Process(int(sys.argv[1])), os.getpid()
    seen: dict[int, psutil.Process] = {}
    while True:
        try:
            seen.update({p.pid: p for p in driver.children(recursive=True) if p.pid != me})
        except psutil.NoSuchProcess:
            break
        ready, _, _ = select.select([sys.stdin], [], [], 1.0)
        if ready and not os.read(sys.stdin.fileno(), 1 << 10):
            break
    for p in seen.values():
        try:
            if p.is_running():
                p.kill()
        except psutil.Error:
            pass


FORWARDED_ENV = ("FTDOJO_HOME", "FTDOJO_TASKS", "FTDOJO_MODELS", "FTDOJO_HUB_MIRROR", "HF_HOME", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
"""Driver settings a run's actors must share wherever they start: the data home, the user's task
folders (a task added from the user's own files), the model cache, and where datasets come from (a
dataset-backed task's repository fingerprint depends on where its dataset resolves)."""


def start_run(cls: type, *args: Any, num_cpus: float, num_gpus: float) -> Any:
    """A run's supervisor as a Ray actor holding the run's declared resources; it and the peers it
    spawns see the driver's ``FORWARDED_ENV`` even on a cluster started elsewhere."""
    import ray

    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    opts: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
    return ray.remote(cls).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0, max_concurrency=8, **opts).remote(*args)


class Handle:
    """A typed reference to one peer, a plain object or a Ray actor. Subclasses set ``actor`` (the plain
    class) and give one method per remote method, each naming the class's method: ``self._call(Curator.curate,
    plan)``. Handles pickle, so a peer can be handed to another (the curator gets the environment's)."""

    actor: ClassVar[type]

    def __init__(self, target: Any) -> None:
        self.target = target
        """The plain object, or the Ray actor handle."""

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        return await call(self.target, method.__name__, *args)


H = TypeVar("H", bound=Handle)


class Spawner:
    """Creates a run's peers, in-process or as Ray actors, and returns their handles."""

    def __init__(self, mode: Literal["local", "ray"] = "local") -> None:
        self.mode = mode

    def spawn(self, handle: type[H], *args: Any, **kwargs: Any) -> H:
        cls = handle.actor
        if self.mode == "local":
            return handle(cls(*args, **kwargs))
        import ray

        return handle(ray.remote(num_cpus=0, max_restarts=0)(cls).options(max_concurrency=4).remote(*args, **kwargs))
