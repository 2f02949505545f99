"""Each run on its own devices: runs placed in placement groups on a local Ray cluster that declares GPUs
it does not have (Ray assigns ``CUDA_VISIBLE_DEVICES`` exactly as on a GPU node)."""

from __future__ import annotations

from datetime import datetime

import pytest
import torch
from conftest import FAKE_GPUS

from ftdojo import bench
from ftdojo.messages import RunRecord

pytestmark = pytest.mark.ray


def _span(r: RunRecord) -> tuple[float, float]:
    start = datetime.fromisoformat(r.started_at).timestamp()
    return start, start + r.wall_s


def test_concurrent_runs_each_see_their_own_single_gpu_and_a_full_cluster_finishes(ray_cluster, tmp_path) -> None:
    # as many runs as GPUs, each holding one GPU and training on one Ray Train worker: the workers live
    # inside their run's reservation, so a cluster whose every GPU is reserved still finishes every run
    out = tmp_path / "bench"
    seeds = ",".join(str(s) for s in range(FAKE_GPUS))
    argv = ["math-linear", "--agents", "naive-sft", "--seeds", seeds, "--profile", "tiny", "--out", str(out), "train.steps=3",
            "resources.cpus=0.5", "resources.gpus=1", "resources.workers=1", "resources.device=cpu"]
    assert bench.main(argv) == 0
    records = [RunRecord.model_validate_json(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert len(records) == FAKE_GPUS and all(r.status == "ok" for r in records), [r.error for r in records]
    devices = []
    for r in records:
        p = r.placement
        assert p is not None and len(p.devices) == 1 and p.node_id
        (device,) = p.devices
        assert set(p.seen) >= {"supervisor", "env", "trainer"} and set(p.seen.values()) == {device}  # one device for the run
        assert p.allocators == {name: "jemalloc" for name in p.seen}  # resources.allocator reached every actor
        train = r.experiments[0].train
        assert train.workers == 1 and train.visible_devices == [device]  # the Ray Train worker too
        devices.append(device)
    spans = {d: _span(r) for d, r in zip(devices, records)}
    overlapping = [(a, b) for i, a in enumerate(records) for b in records[i + 1:]
                   if _span(a)[0] < _span(b)[1] and _span(b)[0] < _span(a)[1]]
    assert overlapping, spans  # they did run at once
    for a, b in overlapping:  # and no two at once shared a GPU
        assert a.placement.devices != b.placement.devices


def test_a_run_bigger_than_any_node_fails_at_once_naming_the_node(ray_cluster, tmp_path, capsys) -> None:
    argv = ["math-linear", "--agents", "zero-shot", "--profile", "tiny", "--out", str(tmp_path / "b"), f"resources.gpus={FAKE_GPUS + 1}",
            f"resources.workers={FAKE_GPUS + 1}", "resources.device=cuda"]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: profile tiny: a run asks for 1 CPUs and {FAKE_GPUS + 1} GPUs on one node, but the largest node has "
                   f"2 CPUs and {FAKE_GPUS} GPUs; lower resources.cpus / resources.gpus or add a node that big")


def test_gpu_resources_need_one_training_worker_per_gpu() -> None:
    from ftdojo.config import load_profile
    from ftdojo.errors import ConfigError

    with pytest.raises(ConfigError, match="gpus=2 needs one training worker per GPU: set workers: 2"):
        load_profile("tiny", ["resources.gpus=2", "resources.device=cuda"])
    with pytest.raises(ConfigError, match="workers=2 would share one GPU"):
        load_profile("tiny", ["resources.gpus=1", "resources.workers=2", "resources.device=cuda"])
    assert load_profile("tiny", ["resources.gpus=2", "resources.workers=2", "resources.device=cuda"]).resources.gpus == 2


def test_a_bench_on_three_simulated_nodes_places_runs_on_several_and_reports_them_all(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "FTDOJO_HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("multinode.py")), str(tmp_path / "mn")],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0 and len(got["nodes"]) == 3
    runs = got["runs"]
    assert sorted((r["task"], r["seed"]) for r in runs) == [("math-linear", 0), ("math-linear", 1), ("my-upper", 0), ("my-upper", 1)]
    assert all(r["status"] == "ok" and r["n"] > 0 for r in runs), runs
    nodes = {r["node"] for r in runs}
    assert len(nodes) == 2 and got["driver"] not in nodes and nodes < set(got["nodes"])  # both worker nodes, never the driver's
    assert {r["node"] for r in runs if r["task"] == "my-upper"} <= nodes  # the driver-side user task ran on the other nodes
    assert "| math-linear |" in got["report"] and "| my-upper |" in got["report"]


def test_a_two_gpu_run_gives_each_training_worker_its_own_device_and_half_gpu_runs_finish(ray_cluster, tmp_path) -> None:
    out = tmp_path / "two"
    argv = ["math-linear", "--agents", "naive-sft", "--seeds", "0", "--profile", "tiny", "--out", str(out), "train.steps=3",
            "resources.cpus=1", "resources.gpus=2", "resources.workers=2", "resources.device=cpu"]
    assert bench.main(argv) == 0
    (r,) = [RunRecord.model_validate_json(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert r.status == "ok", r.error
    p = r.placement
    assert len(p.devices) == 2 and len(set(p.devices)) == 2  # the second bundle's GPU read by the probe
    assert set(p.seen.values()) == {p.devices[0]}  # the model-holding actors share the first GPU
    train = r.experiments[0].train
    assert train.status == "ok" and train.workers == 2 and train.visible_devices == p.devices  # worker k on device k
    # Each peer with its own process reports its peak memory (a process that imported torch holds > 100 MiB)
    assert {"supervisor", "env", "trainer"} <= set(r.peak_rss_mb) and all(v > 100 for v in r.peak_rss_mb.values())
    # a run whose models sit on a GPU has no host bound; pretend GPUs keep them on the host, which is bounded
    assert (r.memory_bound_mb is None) == torch.cuda.is_available()
    out = tmp_path / "half"
    argv = ["math-linear", "--agents", "zero-shot", "--seeds", "0,1", "--profile", "tiny", "--out", str(out),
            "resources.cpus=0.5", "resources.gpus=0.5"]
    assert bench.main(argv) == 0
    half = [RunRecord.model_validate_json(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(half) == 2 and all(h.status == "ok" and len(h.placement.devices) == 1 for h in half)
    assert all(set(h.placement.seen.values()) == set(h.placement.devices) for h in half)


@pytest.mark.parametrize("allocator", ["jemalloc", "glibc"])
def test_a_run_and_the_peers_it_spawns_run_on_the_profile_allocator(ray_cluster, allocator: str) -> None:
    import ray

    from ftdojo import runtime

    class Child:
        def allocator(self) -> str:
            from ftdojo import runtime

            return runtime.allocator()

    class Parent:  # a stand-in supervisor (defined here so Ray ships it by value): its allocator and a peer's
        def allocators(self) -> tuple[str, str]:
            from ftdojo import runtime

            child = ray.remote(Child).options(num_cpus=0).remote()
            return runtime.allocator(), ray.get(child.allocator.remote())

    group = runtime.reserve(0.5, 0)
    try:
        actor = runtime.start_run(Parent, cpus=0.5, gpus=0, placement=group, allocator=allocator)
        assert ray.get(actor.allocators.remote(), timeout=120) == (allocator, allocator)
        ray.kill(actor)
    finally:
        runtime.release(group)
