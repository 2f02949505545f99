"""Orchestration benchmark: many runs of fixed duration through the real bench scheduler.

Each run is a Ray actor started by ``ftdojo.bench.execute`` with the
profile's declared CPU share, exactly as in a real bench, and written to
the run store as a real record; only the work inside the run is replaced by
a fixed-duration wait (standing in for training), so every second beyond
that wait is orchestration: actor start-up, scheduling, the driver's
``ray.wait`` loop, record writing and the report.

    .venv/bin/python bench/orchestration.py --runs 1000 --duration 10 --slots 40
    .venv/bin/python bench/orchestration.py share ~/.cache/ftdojo/results/all__calibration

Reports, with the machine described:

* ideal wall = runs x duration / slots (slots = CPUs / CPU share per run);
* parallel efficiency = ideal / measured wall;
* orchestration overhead per run = (measured wall x slots) / runs - duration,
  i.e. slot-seconds per run not spent in the run's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ftdojo import bench, config, runtime
from ftdojo.messages import Candidate, EvalReport, RunKey, RunRecord


class FixedRun:
    """Same constructor as ``RunSupervisor``; its run is a fixed-duration wait."""

    DURATION_S = 1.0

    def __init__(self, key: RunKey, agent: Any, profile: Any, workspace: str, spawn: str = "ray") -> None:
        self.key, self.profile = key, profile

    async def run(self) -> RunRecord:
        t0 = time.perf_counter()
        await asyncio.sleep(float(os.environ.get("FTDOJO_FIXED_RUN_S", self.DURATION_S)))
        test = EvalReport(split="test", score=0.5, n=2, per_category={}, parse_failure_rate=0.0, errors=[], item_scores=[1.0, 0.0])
        return RunRecord(
            key=self.key, status="ok", base_model=self.profile.base_model, task_spec_hash="fixed", test_sha256="0" * 64,
            final=Candidate(base_model=self.profile.base_model), test=test, wall_s=time.perf_counter() - t0,
        )


class Quiet(bench.Progress):
    def done(self, record: RunRecord) -> None:
        self.finished += 1
        self.failed += record.status != "ok"


def share(out: Path) -> dict[str, Any]:
    """Share of a finished bench's wall time not spent training or evaluating, from its records.

    Training = every fit (TrainResult.wall_s, smoke trains included); evaluation = every dev and
    test evaluation (EvalReport.wall_s). With one run at a time (the default profile holds all
    CPUs), everything else in the bench wall is orchestration: Ray start-up, actors, data
    materialisation, curation, validation checks, records and the report.
    """
    from ftdojo import report

    wall = float(json.loads((out / "bench.json").read_text())["wall_s"])  # written by the bench driver
    train = evals = smoke = 0.0
    runs = report.load_records(out)
    for r in runs:
        for e in r.experiments:
            train += e.train.wall_s if e.train else 0.0
            evals += e.dev.wall_s if e.dev else 0.0
            smoke += sum(c.seconds or 0.0 for c in (e.validation.checks if e.validation else []))
        if r.dev is not None and not any(e.dev for e in r.experiments):
            evals += r.dev.wall_s  # an agent that evaluated without iterating (zero-shot)
        evals += r.test.wall_s if r.test else 0.0
    work = train + evals + smoke
    return {"bench_wall_s": wall, "runs": len(runs), "train_s": train, "smoke_train_s": smoke, "eval_s": evals,
            "orchestration_s": wall - work, "orchestration_share": (wall - work) / wall}


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["share"]:
        print(json.dumps(share(Path(argv[1])), indent=2))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of work per run")
    ap.add_argument("--slots", type=int, default=40, help="runs at once (CPU share per run = CPUs / slots)")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    os.environ["FTDOJO_FIXED_RUN_S"] = str(a.duration)  # inherited by the Ray workers started below
    out = Path(tempfile.mkdtemp(prefix="ftdojo-orch-"))
    cpu_share = a.num_cpus / a.slots
    profile = config.load_profile("tiny", [f"resources.cpus={cpu_share}"])
    agent = config.load_agent("zero-shot")
    seeds_per_task = a.runs // 2
    runs = [
        bench.RunSpec(RunKey(task=t, agent="zero-shot", seed=s, profile="tiny", config_hash="orch"), agent)
        for t in ("math-arith", "math-linear") for s in range(seeds_per_task)
    ][: a.runs]
    t_init = time.perf_counter()
    runtime.init_ray(None, a.num_cpus)
    init_s = time.perf_counter() - t_init
    progress = Quiet(len(runs), 0)
    t0 = time.perf_counter()
    bench.execute(profile, runs, out, progress, runner=FixedRun)
    from ftdojo import report

    report.write(out)
    wall = time.perf_counter() - t0
    records = list((out / "runs").glob("*.json"))
    ideal = len(runs) * a.duration / a.slots
    result = {
        "machine": {"cpus": a.num_cpus, "python": platform.python_version(), "platform": platform.platform()},
        "runs": len(runs), "records_written": len(records), "failed": progress.failed,
        "duration_s": a.duration, "slots": a.slots, "cpu_share_per_run": cpu_share,
        "ray_init_s": init_s, "wall_s": wall, "ideal_wall_s": ideal,
        "parallel_efficiency": ideal / wall,
        "overhead_per_run_s": wall * a.slots / len(runs) - a.duration,
        "throughput_runs_per_min": len(runs) / wall * 60,
    }
    print(json.dumps(result, indent=2))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    return 0 if len(records) == len(runs) and not progress.failed else 1


if __name__ == "__main__":
    sys.exit(main())
