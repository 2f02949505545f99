"""The one place ftdojo touches Ray's actor API.

Actor logic lives in plain classes (``actors/``, ``ftdojo.dojo``) that unit
tests build directly. Each has a small typed ``Handle`` beside it (the
pattern of Ray's ``util/queue.py``: a plain class plus a thin wrapper), whose
methods name the class's own methods, so ``await curator.curate(plan)`` reads
and navigates like a local call whether the peer is a plain object or a Ray
actor. ``Spawner`` creates a run's peers and returns their handles:
in-process (``local``) or as Ray actors (``ray``). Each run reserves one
placement group (``reserve``: its CPUs and GPUs, on one node); its supervisor,
its peers and its Ray Train workers all run inside it, asking Ray for nothing
beyond it (``num_cpus=0``; a share of the first GPU for the actors that hold
a model), so runs queue for whole reservations and never wait on each other.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from ftdojo.errors import FtdojoError, UserError

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


FORWARDED_ENV = ("FTDOJO_HOME", "FTDOJO_TASKS", "FTDOJO_MODELS", "FTDOJO_HUB_MIRROR", "HF_HOME", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE",
                 "ONEDNN_PRIMITIVE_CACHE_CAPACITY")
"""Driver settings a run's actors must share wherever they start: the data home, the user's task
folders (a task added from the user's own files), the model cache, and where datasets come from (a
dataset-backed task's repository fingerprint depends on where its dataset resolves), and a cap on oneDNN's
primitive cache where the user sets one (the trainer's host memory, README)."""


GPU_SHARE = 4
"""Actors of a run that hold a model on its first GPU (supervisor with the referee, environment,
trainer, validator): each asks Ray for 1/GPU_SHARE of it, so Ray gives all of them that GPU's id."""


def bundles(cpus: float, gpus: float) -> list[dict[str, float]]:
    """A run's reservation: one bundle with its CPUs and its first GPU (or share of one), then one
    bundle per further GPU (its training workers' devices), all on one node."""
    first = {"CPU": float(cpus), **({"GPU": min(1.0, float(gpus))} if gpus else {})}
    return [first] + [{"GPU": 1.0} for _ in range(math.ceil(gpus) - 1)]


def check_fits(cpus: float, gpus: float, where: str) -> None:
    """A ``UserError`` naming the largest node when no node of the cluster can hold one run (a
    placement group that cannot be placed would wait forever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return
    big = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    raise UserError(f"{where}: a run asks for {cpus:g} CPUs and {gpus:g} GPUs on one node, but the largest node has "
                    f"{big.get('CPU', 0):g} CPUs and {big.get('GPU', 0):g} GPUs; lower resources.cpus / resources.gpus "
                    f"or add a node that big")


def slots(cpus: float, gpus: float) -> int:
    """How many runs of this size the cluster's live nodes hold at once."""
    import ray

    def fit(have: float, need: float) -> float:
        return math.floor(have / need + 1e-9) if need else math.inf

    return int(sum(min(fit(node.get("CPU", 0), cpus), fit(node.get("GPU", 0), gpus))  # cpus > 0: always finite
                   for node in (x.get("Resources", {}) for x in ray.nodes() if x.get("Alive"))))


def reserve(cpus: float, gpus: float) -> Any:
    """The run's placement group (STRICT_PACK: one node); every actor of the run, its Ray Train
    workers included, runs inside it."""
    from ray.util.placement_group import placement_group

    return placement_group(bundles(cpus, gpus), strategy="STRICT_PACK")


def _in(pg: Any, bundle: int = 0, capture: bool = False) -> Any:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=bundle,
                                            placement_group_capture_child_tasks=capture)


def start_run(cls: type, *args: Any, cpus: float, gpus: float, placement: Any, allocator: str,
              forward: tuple[str, ...] = ()) -> Any:
    """A run's supervisor as a Ray actor inside the run's placement group (``reserve``), holding its
    share of the run's first GPU; the peers it spawns are placed in the group too, and see the
    driver's ``FORWARDED_ENV`` and the variables named in ``forward`` (the agent's API keys) even on a
    cluster started elsewhere. Its processes (and its peers', which inherit its runtime environment) run
    on the C ``allocator`` (``allocator_env``)."""
    import ray

    env = {k: os.environ[k] for k in (*FORWARDED_ENV, *forward) if os.environ.get(k)}
    env.update(allocator_env(allocator))
    opts: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
    return ray.remote(cls).options(num_cpus=0, num_gpus=min(1.0, gpus) / GPU_SHARE if gpus else 0, max_restarts=0, max_concurrency=8,
                                   scheduling_strategy=_in(placement, capture=True), **opts).remote(*args)


def visible_devices() -> str | None:
    """``CUDA_VISIBLE_DEVICES`` of this process (Ray sets it for an actor holding GPUs)."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def _visible(_actor: Any) -> str | None:
    return visible_devices()


async def peer_devices(handle: Handle) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` a peer's process sees (its own process when it is a plain object)."""
    if hasattr(handle.target, "__ray_call__"):
        return await handle.target.__ray_call__.remote(_visible)
    return visible_devices()


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> float:
    """This process's resident memory now, MiB (its peak where the system reports no current figure)."""
    now = _status_mb("VmRSS")
    return now if now is not None else peak_rss_mb()


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the system (jemalloc's ``arena.<all>.purge`` where it serves this
    process, ``start_run``; glibc's ``malloc_trim`` otherwise); False where the C library has neither. A fit
    or an evaluation on the host frees its activations into the heap, which keeps them: after 24 LoRA steps
    of the bundled model glibc's heap held 1.56 GB free in 18,913 chunks and the process's resident memory
    stayed at 2.9 GB until the next fit (bench/RESULTS.md, "Memory after a fit"). Releasing once a fit or an
    evaluation ends costs milliseconds and lowers what an idle actor holds, not a fit's peak."""
    global _trim
    if (mallctl := _mallctl()) is not None:
        return mallctl(b"arena.%d.purge" % MALLCTL_ARENAS_ALL, None, None, None, 0) == 0
    if _trim is None:
        import ctypes
        import ctypes.util

        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim is False:
        return False
    _trim(0)
    return True


_trim: Any = None


MALLCTL_ARENAS_ALL = 4096
"""jemalloc's arena index meaning every arena (``MALLCTL_ARENAS_ALL``)."""

_mallctl_fn: Any = None


def _mallctl() -> Any:
    """jemalloc's ``mallctl`` where jemalloc serves this process's malloc (it is in the global symbol scope
    only when preloaded; a library linking its own copy keeps it local), else None."""
    global _mallctl_fn
    if _mallctl_fn is None:
        import ctypes

        try:
            fn = ctypes.CDLL(None).mallctl
            fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            _mallctl_fn = fn
        except (OSError, AttributeError):
            _mallctl_fn = False
    return _mallctl_fn or None


def allocator() -> str:
    """The C allocator serving this process: ``jemalloc`` (preloaded by ``start_run``) or ``glibc``."""
    return "jemalloc" if _mallctl() is not None else "glibc"


def _allocator(_actor: Any) -> str:
    return allocator()


async def peer_allocator(handle: Handle) -> str:
    """The C allocator of a peer's process (this process's when it is a plain object)."""
    if hasattr(handle.target, "__ray_call__"):
        return await handle.target.__ray_call__.remote(_allocator)
    return allocator()


def allocator_env(name: str) -> dict[str, str]:
    """Environment variables that give a process started with them the allocator ``name``: ``jemalloc``
    preloads the copy Ray ships (none where this Ray ships none: the process keeps glibc's, and the record
    says so); ``glibc`` adds nothing."""
    path = jemalloc_path() if name == "jemalloc" else None
    if path is None:
        return {}
    before = os.environ.get("LD_PRELOAD", "")
    return {"LD_PRELOAD": f"{path}:{before}" if before else path}


def jemalloc_path() -> str | None:
    """The jemalloc shared library Ray ships (``ray/core/libjemalloc.so``), None where this Ray has none."""
    try:
        import ray
    except ImportError:
        return None
    path = Path(ray.__file__).parent / "core" / "libjemalloc.so"
    return str(path) if path.is_file() else None


def reset_peak_rss() -> bool:
    """Start this process's peak resident memory afresh from now (Linux ``clear_refs``), so a run in a reused
    process reports its own peak; False where the system keeps no resettable peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_mb("VmHWM") is not None


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started or since ``reset_peak_rss``, MiB (Linux's VmHWM;
    elsewhere ``ru_maxrss``, the whole life of the process)."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _peak(_actor: Any) -> float:
    return peak_rss_mb()


async def peer_peak_rss_mb(handle: Handle) -> float | None:
    """A peer actor's peak resident memory, MiB (None for a plain object: it shares this process's)."""
    if hasattr(handle.target, "__ray_call__"):
        return await handle.target.__ray_call__.remote(_peak)
    return None


class _Probe:
    def ids(self) -> list[str]:
        import ray

        return [str(i) for i in ray.get_gpu_ids()]


async def run_devices(gpus: float) -> list[str]:
    """The GPU ids of the run's reservation, in bundle order: this actor's (the first bundle's GPU), then
    each further bundle's, read by a short-lived probe holding it. Empty outside a placement group."""
    import ray
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()
    if pg is None or not gpus:
        return []
    mine = [str(i) for i in ray.get_gpu_ids()]
    rest: list[str] = []
    for k in range(1, math.ceil(gpus)):
        probe = ray.remote(_Probe).options(num_cpus=0, num_gpus=1, scheduling_strategy=_in(pg, k)).remote()
        rest += await probe.ids.remote()
        ray.kill(probe)
    return mine[:1] + rest


def worker_pin() -> dict[str, float] | None:
    """Ray Train worker resources that keep the workers inside this actor's placement group and take
    nothing the run's actors hold (a sliver of the group's bundle token): the workers' devices are set
    from ``run_devices`` by rank, not by Ray. None outside a placement group."""
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()
    return {f"bundle_group_{pg.id.hex()}": 0.001} if pg is not None else None


def release(placement: Any) -> None:
    from ray.util.placement_group import remove_placement_group

    try:
        remove_placement_group(placement)
    except Exception:  # noqa: BLE001 - a group already gone (the cluster went down) needs no release
        pass


class Handle:
    """A typed reference to one peer, a plain object or a Ray actor. Subclasses set ``actor`` (the plain
    class) and give one method per remote method, each naming the class's method: ``self._call(Curator.curate,
    plan)``. Handles pickle, so a peer can be handed to another (the curator gets the environment's)."""

    actor: ClassVar[type]
    on_device: ClassVar[bool] = False
    """Whether the peer holds a model (evaluates or trains): it then shares the run's first GPU."""

    def __init__(self, target: Any) -> None:
        self.target = target
        """The plain object, or the Ray actor handle."""

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        return await call(self.target, method.__name__, *args)


H = TypeVar("H", bound=Handle)


class Spawner:
    """Creates a run's peers, in-process or as Ray actors, and returns their handles. Ray actors are
    placed in the run's placement group when there is one; a peer whose handle says ``on_device``
    takes a share of the run's first GPU, so it sees the same device as the supervisor."""

    def __init__(self, mode: Literal["local", "ray"] = "local", gpus: float = 0) -> None:
        self.mode, self.gpus = mode, gpus

    def spawn(self, handle: type[H], *args: Any, **kwargs: Any) -> H:
        cls = handle.actor
        if self.mode == "local":
            return handle(cls(*args, **kwargs))
        import ray
        from ray.util import get_current_placement_group

        pg = get_current_placement_group()
        opts: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0, "max_concurrency": 4}
        if pg is not None:
            opts["scheduling_strategy"] = _in(pg, capture=True)
            if handle.on_device and self.gpus:
                opts["num_gpus"] = min(1.0, self.gpus) / GPU_SHARE
        return handle(ray.remote(cls).options(**opts).remote(*args, **kwargs))
