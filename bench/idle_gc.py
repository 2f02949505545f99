"""Idle actors while runs are queued: Ray's periodic full GC against ftdojo's setting.

While any lease request waits for resources (in a bench: every run beyond the
cluster's slots), Ray's raylet asks every local worker for a full
``gc.collect()`` every ``local_gc_min_interval_s`` (10 s by default), to free
actor handles caught in reference cycles. A run's actors hold a loaded model,
so each of those collections walks a large heap, on every idle actor of every
running run. ftdojo kills each finished run's supervisor itself (its actors
die with it), so ``runtime.RAY_ENV`` raises the interval to an hour.

This starts a fresh local cluster per setting (Ray reads the variable at
``ray.init``), with ``--actors`` idle actors that each load ``--model`` the way
a run's trainer, validator and dojo do, one actor holding the cluster's CPU and
one more waiting for it (a queued run), and measures each idle actor's CPU
seconds and full collections over ``--window`` seconds. Both settings run in
the same invocation, one after the other.

    .venv/bin/python bench/idle_gc.py                      # bundled model, 3 idle actors, 60 s each
    .venv/bin/python bench/idle_gc.py --model tiny-random --window 30
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

SETTINGS = {"ray-default": "10", "ftdojo": None}  # None: whatever runtime.RAY_ENV sets


class Idle:
    """Holds a loaded model, as a run's peers do, and counts the full collections it is asked for."""

    def __init__(self, model: str) -> None:
        from ftdojo import models

        self.model = models.load(model)
        self.full = 0
        gc.callbacks.append(self._count)

    def _count(self, phase: str, info: dict[str, Any]) -> None:
        self.full += phase == "start" and info["generation"] == 2

    def usage(self) -> tuple[float, int]:
        return time.process_time(), self.full


class Hog:
    def ready(self) -> bool:
        return True


def measure(setting: str, model: str, actors: int, window: float, settle: float) -> dict[str, Any]:
    """In this process: a fresh cluster with one CPU, idle model holders, a busy slot and a queued run."""
    if SETTINGS[setting] is not None:
        os.environ["RAY_local_gc_min_interval_s"] = SETTINGS[setting]
    import ray

    from ftdojo import runtime

    runtime.init_ray(None, 1)
    holders = [ray.remote(num_cpus=0)(Idle).remote(model) for _ in range(actors)]
    busy = ray.remote(num_cpus=1)(Hog).remote()
    ray.get(busy.ready.remote())
    queued = ray.remote(num_cpus=1)(Hog).remote()  # waits for the CPU for the whole window
    time.sleep(settle)  # past the first request, which comes ~40 s after a request starts waiting in either setting
    start = ray.get([h.usage.remote() for h in holders])
    time.sleep(window)
    end = ray.get([h.usage.remote() for h in holders])
    del queued
    cpu = [e[0] - s[0] for s, e in zip(start, end, strict=True)]
    return {
        "setting": setting, "local_gc_min_interval_s": os.environ["RAY_local_gc_min_interval_s"], "window_s": window,
        "idle_cpu_s_per_actor": cpu, "full_collections_per_actor": [e[1] - s[1] for s, e in zip(start, end, strict=True)],
        "idle_core_share": sum(cpu) / window,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="model each idle actor loads (default: the bundled one)")
    ap.add_argument("--actors", type=int, default=3, help="idle actors holding the model (default 3: trainer, validator, dojo)")
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured per setting (default 60)")
    ap.add_argument("--settle", type=float, default=60.0, help="seconds after the run is queued before measuring (default 60)")
    ap.add_argument("--setting", choices=sorted(SETTINGS), help=argparse.SUPPRESS)  # internal: one setting, in a child
    a = ap.parse_args()
    if a.setting:
        print(json.dumps(measure(a.setting, a.model, a.actors, a.window, a.settle)))
        return
    results = []
    for setting in SETTINGS:  # a child per setting: Ray reads the interval once, at ray.init
        cmd = [sys.executable, __file__, "--setting", setting, "--model", a.model, "--actors", str(a.actors), "--window", str(a.window), "--settle", str(a.settle)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    base, ours = results
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "model": a.model, "actors": a.actors,
        "idle_core_share": {"ray-default": round(base["idle_core_share"], 4), "ftdojo": round(ours["idle_core_share"], 4)},
        "ratio_default_over_ftdojo": round(base["idle_core_share"] / max(ours["idle_core_share"], 1e-9), 1),
    }, indent=1))


if __name__ == "__main__":
    main()
