"""The bench driver: ``python -m ftdojo.bench SUITE [options] [overrides]``.

Expands suite x agents x seeds into runs, sends each run's supervisor to Ray
with the profile's declared resources (a local cluster when no address is
given, or the cluster of ``--address`` / ``RAY_ADDRESS`` / ``ray job submit``),
writes one JSON record per run atomically as it finishes, and rebuilds the
results table. Runs whose record already exists with status ok are skipped,
so re-running an interrupted bench redoes nothing that finished.

Examples::

    python -m ftdojo.bench all                          # embedded default
    python -m ftdojo.bench math --seeds 0,1,2 --agents zero-shot,naive-sft
    python -m ftdojo.bench all --profile tiny train.steps=10
    ray job submit --working-dir . -- python -m ftdojo.bench all
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ftdojo import agents, config, datafiles, log, models, paths, recipes, report, repository, runtime, transcripts
from ftdojo.errors import UnknownName, UserError
from ftdojo.messages import RunKey, RunRecord
from ftdojo.registry import all_tasks, get_domain, get_task


@dataclass(frozen=True)
class RunSpec:
    key: RunKey
    agent: config.AgentConfig


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m ftdojo.bench",
        description="Run a suite of fine-tuning tasks x agents x seeds on Ray and write a results table.",
        epilog=__doc__.split("Examples::")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("suite", help=f"suite name ({', '.join(config.list_configs('suites'))}) or a task id")
    ap.add_argument("overrides", nargs="*", help="profile overrides FIELD.PATH=VALUE, e.g. train.steps=50")
    ap.add_argument("--agents", help="comma-separated agent names (default: the suite's)")
    ap.add_argument("--seeds", help="comma-separated integer seeds (default: the suite's)")
    ap.add_argument("--profile", help="profile name or YAML path (default: the suite's profile, else default)")
    ap.add_argument("--out", help="output folder (default: $FTDOJO_HOME/results/SUITE__PROFILE)")
    ap.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local cluster)")
    ap.add_argument("--num-cpus", type=int, help="CPUs of the local cluster (default: all)")
    return ap.parse_intermixed_args(argv)


def plan_runs(args: argparse.Namespace) -> tuple[config.ProfileConfig, list[RunSpec], str]:
    """Validate everything the bench needs before any compute is spent."""
    if args.suite in all_tasks():
        suite = config.SuiteConfig(name=args.suite, tasks=[args.suite], agents=["zero-shot", "naive-sft"])
    elif args.suite in config.list_configs("suites") or args.suite.endswith((".yaml", ".yml")):
        suite = config.load_suite(args.suite)
    else:
        raise UnknownName("suite or task", args.suite, config.list_configs("suites") + list(all_tasks()))
    profile = config.load_profile(args.profile or suite.profile, args.overrides)
    for t in suite.tasks:
        get_task(t)
    agent_names = args.agents.split(",") if args.agents else suite.agents
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else suite.seeds
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    agent_cfgs = [agents.load(a) for a in agent_names]
    for a in agent_cfgs:
        config.agent_train(a, profile)
        if why := a.missing_key():
            raise UserError(why)
    runs = []
    for task_id in suite.tasks:
        spec_hash = get_task(task_id).spec_hash()
        domain = get_domain(get_task(task_id).domain)
        code = paths.run_code_version(domain)  # the code this task's runs execute
        for a in agent_cfgs:
            if not suite.runs_on(a.name, task_id):
                continue
            if a.policy == "reference" and not {s.role for s in domain.sources} & recipes.REFERENCE_ROLES:
                raise recipes.no_reference(task_id)
            for seed in seeds:
                h = paths.sha256_json([code, spec_hash, a.model_dump(), profile.model_dump()])
                key = RunKey(task=task_id, agent=a.name, seed=seed, profile=profile.name, config_hash=h)
                runs.append(RunSpec(key, a))
    return profile, runs, suite.name


def prepare(profile: config.ProfileConfig, runs: list[RunSpec]) -> None:
    """Materialise data and convert the model once in the driver, not in every run; refuse an evaluation
    server this node cannot start (each run's node checks again when the run starts)."""
    from ftdojo import serving

    why = serving.preflight(profile.evaluation, "cuda" if profile.resources.gpus >= 1 else "cpu")
    if why:
        raise UserError(f"profile {profile.name}: {why}")
    models.resolve(profile.base_model)
    for d in {get_task(r.key.task).domain for r in runs}:
        repository.materialize(get_domain(d))


def record_path(out: Path, key: RunKey) -> Path:
    return out / "runs" / f"{key.slug}.json"


def finished(out: Path, key: RunKey) -> bool:
    """Whether the run's record exists with status ok; a damaged one is set aside, said so, and rerun."""
    p = record_path(out, key)
    if not p.exists():
        return False
    try:
        return report.read_record(p).status == "ok"
    except report.DamagedRecord as e:
        report.warn_damaged([report.set_aside(e)])
        return False


def failed_record(run: RunSpec, profile: config.ProfileConfig, error: str, wall_s: float) -> RunRecord:
    task = get_task(run.key.task)
    return RunRecord(
        key=run.key,
        status="failed",
        error=error,
        base_model=profile.base_model,
        task_spec_hash=task.spec_hash(),
        test_sha256="",
        wall_s=wall_s,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        code_version=paths.run_code_version(get_domain(task.domain)),
    )


def execute(profile: config.ProfileConfig, runs: list[RunSpec], out: Path, progress: Any, runner: type | None = None) -> None:
    """One actor per run (``runner``, default the run supervisor) holding the profile's resources;
    records are written by this driver as runs finish, so a killed driver loses only unfinished runs."""
    import ray

    from actors.supervisor import RunSupervisor

    r = profile.resources
    queue = list(runs)
    pending: dict[Any, tuple[RunSpec, Any, Any, float]] = {}

    def launch() -> None:
        """Start runs while fewer are in flight than the cluster holds at once, plus two ready to go: each
        in its own placement group, which Ray places once the whole reservation is free (a thousand queued
        runs are never a thousand pending groups and actors; a cluster that grows gets more at once)."""
        window = runtime.slots(r.cpus, r.gpus) + 2
        while queue and len(pending) < window:
            run = queue.pop(0)
            group = runtime.reserve(r.cpus, r.gpus)
            actor = runtime.start_run(runner or RunSupervisor, run.key, run.agent, profile, str(out / "work" / run.key.slug), "ray",
                                      cpus=r.cpus, gpus=r.gpus, placement=group, forward=run.agent.api_keys,
                                      allocator=r.allocator)
            pending[actor.run.remote()] = (run, actor, group, time.perf_counter())

    launch()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
        for ref in done:
            run, actor, group, t0 = pending.pop(ref)
            try:
                record: RunRecord = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a crashed run is recorded as failed, never lost
                record = failed_record(run, profile, f"{type(e).__name__}: {str(e).strip().splitlines()[-1]}"[:800], time.perf_counter() - t0)
            if record.transcript:
                transcripts.write(record_path(out, run.key), record.transcript)
            datafiles.atomic_write_text(record_path(out, run.key), record.model_dump_json(indent=1))
            ray.kill(actor)
            runtime.release(group)
            progress.done(record)
        if done:
            launch()
        progress.tick(len(pending) + len(queue))


class Progress:
    """One status line per change: done / running / failed / estimated time left."""

    def __init__(self, total: int, skipped: int) -> None:
        self.total, self.skipped = total, skipped
        self.finished = self.failed = 0
        self.t0 = time.perf_counter()
        self.log = log.get("bench")
        self._last = ""
        self._last_t = 0.0

    def done(self, record: RunRecord) -> None:
        self.finished += 1
        self.failed += record.status != "ok"
        score = f"test={100 * record.test.score:.1f}" if record.test else f"error={record.error}"
        self.log.info("run_done", run=record.key.slug, status=record.status, wall_s=round(record.wall_s, 1))
        print(f"  done {record.key.task} / {record.key.agent} / seed {record.key.seed}: {score}", file=sys.stderr)

    def tick(self, pending: int) -> None:
        todo = self.total - self.skipped
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.finished * (todo - self.finished) if self.finished else float("nan")
        line = (
            f"[bench] {self.finished + self.skipped}/{self.total} done ({self.skipped} skipped), "
            f"{pending} running or queued, {self.failed} failed, elapsed {elapsed / 60:.1f} min"
            + (f", ~{eta / 60:.1f} min left" if eta == eta else "")
        )
        if line.split(", elapsed")[0] != self._last.split(", elapsed")[0] or elapsed - self._last_t >= 60:
            print(line, file=sys.stderr, flush=True)
            self._last, self._last_t = line, elapsed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log.setup()
    t0 = time.perf_counter()
    try:
        profile, runs, suite_name = plan_runs(args)
        out = Path(args.out) if args.out else paths.home() / "results" / f"{suite_name}__{profile.name}"
        prepare(profile, runs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    todo = [r for r in runs if not finished(out, r.key)]
    print(f"[bench] {len(runs)} runs ({len(runs) - len(todo)} already done) -> {out}", file=sys.stderr)
    if todo:
        resources = runtime.init_ray(args.address, args.num_cpus)
        log.get("bench").info("ray_ready", resources={k: v for k, v in resources.items() if "node" not in k})
        try:
            runtime.check_fits(profile.resources.cpus, profile.resources.gpus, f"profile {profile.name}")
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        progress = Progress(len(runs), len(runs) - len(todo))
        execute(profile, todo, out, progress)
    wall = time.perf_counter() - t0 if todo else None
    if wall is not None:
        datafiles.atomic_write_text(out / "bench.json", json.dumps({"wall_s": wall, "runs": len(runs), "ran": len(todo)}) + "\n")
    md = report.write(out, wall, {r.key.slug for r in runs})
    print(md)
    print(f"[bench] results: {out / 'results.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
