"""Run supervisor: owns one run's actors, its iteration loop and its record.

The bench talks to supervisors only. A supervisor spawns the run's DojoEnv,
curator and trainer (in-process or as Ray actors), hands the agent a narrow
context (task card, ``iterate``, ``evaluate``), and keeps the referee to
itself. Every failure inside an iteration — a bad recipe, a budget overrun,
a training crash, a dead actor — becomes a failed or rejected experiment in
exactly one place (``iterate``), and the run goes on. At the end the
agent's candidate (or the untouched base model) is finalized on the sealed
test split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from actors.curator import Curator
from actors.diagnostician import Diagnostician
from actors.planner import Planner
from actors.trainer import Trainer
from actors.validator import Validator
from ftdojo import agents, backbones, log, prompts
from ftdojo.config import AgentConfig, ProfileConfig, agent_train
from ftdojo.dojo import DojoEnv, Referee
from ftdojo.errors import RunError, UserError
from ftdojo.messages import (
    Candidate,
    CuratedData,
    EvalReport,
    Event,
    Experiment,
    Plan,
    RunKey,
    RunRecord,
    TaskCard,
    TrainConfig,
    TrainResult,
    ValidationReport,
)
from ftdojo.paths import code_version
from ftdojo.runtime import Spawner, call, warm
from ftdojo.tasking import get_task

LEAK_FLAG = 0.05  # share of training inputs overlapping test (overall or within one source) that flags a run


def leaked(leak: dict[str, float]) -> bool:
    return any(v >= LEAK_FLAG for k, v in leak.items() if k.startswith("test"))


@dataclass
class Context:
    """What an agent gets: no referee, no test split, no supervisor internals."""

    card: TaskCard
    seed: int
    train: TrainConfig
    propose: Any
    diagnostician: Any
    iterate: Any
    evaluate: Any
    record: Any
    usage: Any


class RunSupervisor:
    def __init__(
        self,
        key: RunKey,
        agent: AgentConfig,
        profile: ProfileConfig,
        workspace: str,
        spawn: Literal["local", "ray"] = "local",
    ) -> None:
        self.key = key
        self.agent_cfg = agent
        self.profile = profile
        self.workspace = Path(workspace)
        self.spawner = Spawner(spawn)
        self.threads = max(1, int(profile.cpus_per_run))
        self.log = log.get("run", run=key.slug)
        self.experiments: list[Experiment] = []
        self.curated: list[CuratedData] = []
        self.dev_reports: dict[str, EvalReport] = {}
        self.produced: dict[str, str] = {}  # checkpoint path -> digest, as this run's trainer wrote it
        self.phase = "starting"
        self.events: list[Event] = []
        self._t0 = time.perf_counter()

    async def run(self) -> RunRecord:
        t0, started = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = t0
        task = get_task(self.key.task)
        p = self.profile
        warm("torch")  # the referee evaluates in this process at the end
        referee = Referee(task.id, p.eval_batch_size, self.threads)
        self.env = self.spawner.spawn(DojoEnv, task.id, p.base_model, p.budget, p.eval_batch_size, self.threads)
        a = self.agent_cfg
        # Peers start (and warm their imports) while the environment describes the task;
        # an agent that never trains (zero-shot) gets its trainer only if it asks.
        self.curator = self.spawner.spawn(Curator, self.env, str(self.workspace), self.key.seed)
        self.trainer: Any = None if a.policy == "zero-shot" else self._spawn_trainer()
        self.card: TaskCard = await call(self.env, "describe")
        self.validator: Any = None  # spawned on first use: baselines never validate
        self.planner: Any = None
        self.diagnostician: Any = None
        if a.policy == "ft-agent":
            tokens = p.budget.max_llm_tokens
            self.planner = self.spawner.spawn(Planner, backbones.make(a.backbone, tokens), a.search == "linear")
            self.diagnostician = self.spawner.spawn(Diagnostician, a.feedback == "scalar", backbones.make(a.backbone, tokens))
        self.log.info("run_start", agent=a.name, base_model=p.base_model)
        await self._event("run_start", agent=a.name, base_model=p.base_model, task=task.id, seed=self.key.seed)
        ctx = Context(
            self.card, self.key.seed, agent_train(a, p), self.propose, self.diagnostician,
            self.iterate, self.evaluate, self.record, self.usage,
        )
        candidate = await agents.make(self.agent_cfg).run(ctx)
        fallback = candidate is None
        final = candidate or Candidate(base_model=p.base_model)
        provenance = referee.provenance(final, p.base_model, self.produced)
        test = referee.finalize(final)
        await self._event("finalize", duration_s=test.wall_s, checkpoint=final.checkpoint, fallback_to_base=fallback,
                          provenance_ok=provenance.ok)
        examples = [e for c in self.curated for e in _read_examples(c.path)]
        leak = referee.leak_check([e.input for e in examples], [e.source for e in examples]) if examples else {"dev": 0.0, "test": 0.0}
        self.log.info("run_end", test=round(test.score, 4), fallback=fallback, leak=leak, provenance=provenance.reason or "ok")
        return RunRecord(
            key=self.key,
            status="ok",
            base_model=p.base_model,
            direction=task.direction,
            task_spec_hash=task.spec_hash(),
            test_sha256=referee.test_sha256(),
            final=final,
            fallback_to_base=fallback,
            dev=self.dev_reports.get(final.model_dump_json()),
            test=test,
            experiments=self.experiments,
            leak=leak,
            leak_flagged=leaked(leak),
            provenance=provenance,
            provenance_flagged=not provenance.ok,
            events=self.events,
            usage=await self.usage(),
            wall_s=time.perf_counter() - t0,
            started_at=started,
            code_version=code_version(),
            prompts={n: prompts.digest(n) for n in ("planner", "diagnostician")} if self.agent_cfg.backbone.kind == "llm" else {},
        )

    def _spawn_trainer(self) -> Any:
        return self.spawner.spawn(Trainer, self.env, str(self.workspace), self.threads)

    def state(self) -> dict[str, Any]:
        """Where the run is (for progress displays and fault-injection tests)."""
        return {"phase": self.phase, "experiments": len(self.experiments)}

    def peer(self, name: Literal["env", "curator", "trainer", "validator", "planner", "diagnostician"]) -> Any:
        return getattr(self, name)

    async def usage(self) -> dict[str, float]:
        out = dict(await call(self.env, "usage"))
        for peer in (p for p in (self.planner, self.diagnostician) if p is not None):
            for k, v in (await call(peer, "usage")).items():
                out[f"llm_{k}"] = out.get(f"llm_{k}", 0.0) + float(v)
        if "llm_tokens" in out:
            out["llm_cost_usd"] = out["llm_tokens"] * self.agent_cfg.backbone.usd_per_1m_tokens / 1e6
        return out

    async def _event(
        self, event: str, iteration: str | None = None, duration_s: float | None = None,
        budget: dict[str, float] | None = None, **data: Any,
    ) -> None:
        """Append to the event log; ``budget`` saves the usage round trips when a caller logs a batch."""
        if budget is None:
            budget = {k: round(float(v), 3) for k, v in (await self.usage()).items()}
        self.events.append(
            Event(t=round(time.perf_counter() - self._t0, 3), event=event, iteration=iteration,  # type: ignore[arg-type]
                  duration_s=None if duration_s is None else round(duration_s, 3), data=data, budget=budget)
        )

    async def propose(self, history: list[Experiment], base: TrainConfig, steps_left: int, prompt: Any) -> Plan | Experiment:
        """Ask the planner; a backbone failure comes back as the failed experiment it was recorded as."""
        t0 = time.perf_counter()
        try:
            plan: Plan = await call(self.planner, "propose", self.card, history, base, steps_left, prompt)
            await self._event("plan", plan.plan_id, time.perf_counter() - t0, parent=plan.parent, hypothesis=plan.hypothesis,
                              sources=[m.source for m in plan.recipe.sources], steps=plan.train.steps, lr=plan.train.lr)
            return plan
        except RunError as e:
            exp = Experiment(id=f"it{len(history)}", parent=None, plan=None, status="failed", error=f"planner: {e}")
            self.experiments.append(exp)
            await self._event("iteration", exp.id, time.perf_counter() - t0, status="failed", error=exp.error)
            self.log.info("iteration", plan=exp.id, status="failed", error=exp.error)
            return exp

    async def record(self, exp: Experiment) -> None:
        """Replace an experiment with its annotated copy (feedback attached)."""
        self.experiments = [exp if e.id == exp.id else e for e in self.experiments]
        if exp.feedback is not None:
            await self._event("feedback", exp.id, findings=[f"{f.level}:{f.code}" for f in exp.feedback.findings],
                              decision=exp.feedback.decision)

    async def evaluate(self, candidate: Candidate) -> EvalReport:
        report: EvalReport = await call(self.env, "evaluate", candidate)
        self.dev_reports[candidate.model_dump_json()] = report
        return report

    async def iterate(self, plan: Plan, validate: bool = False) -> Experiment:
        """One iteration; every failure inside it is recorded here and nowhere else."""
        t0 = time.perf_counter()
        curated: CuratedData | None = None
        report: ValidationReport | None = None
        result: TrainResult | None = None
        dev: EvalReport | None = None
        status: Literal["ok", "rejected", "failed"] = "ok"
        error: str | None = None
        try:
            await call(self.env, "check_wall")
            self.phase = "curate"
            t1 = time.perf_counter()
            curated = await call(self.curator, "curate", plan)
            self.curated.append(curated)
            await self._event("curate", plan.plan_id, time.perf_counter() - t1, examples=curated.n_examples,
                              per_source=curated.per_source, dropped=curated.dropped)
            if validate:
                self.phase = "validate"
                if self.validator is None:
                    self.validator = self.spawner.spawn(Validator, self.env, str(self.workspace), self.threads)
                report = await call(self.validator, "validate", plan, curated, self.card)
                spent = {k: round(float(v), 3) for k, v in (await self.usage()).items()}  # one lookup for all checks
                for c in report.checks:
                    await self._event("check", plan.plan_id, c.seconds, spent, name=c.name, status=c.status, reason=c.reason)
            if report is not None and not report.passed:
                failed = [f"{c.name}: {c.reason}" for c in report.checks if c.status == "fail"]
                status, error = "rejected", "fail-fast: " + "; ".join(failed)
            elif curated.n_examples == 0:
                status, error = "rejected", "recipe produced no training examples"
            else:
                self.phase = "train"
                if self.trainer is None:
                    self.trainer = self._spawn_trainer()
                result = await call(self.trainer, "train", plan, curated, self.card, self._init_adapter(plan))
                await self._event("train", plan.plan_id, result.wall_s, status=result.status, steps=result.steps,
                                  final_loss=result.losses[-1] if result.losses else None,
                                  tokens_per_s=round(result.tokens_per_s, 1), error=result.error)
                if result.status != "ok":
                    status, error = "failed", result.error
                else:
                    if result.checkpoint and result.checkpoint_sha256:
                        self.produced[str(Path(result.checkpoint))] = result.checkpoint_sha256
                    cand = Candidate(base_model=self.card.base_model, checkpoint=result.checkpoint, prompt=plan.prompt)
                    self.phase = "evaluate"
                    dev = await self.evaluate(cand)
                    await self._event("evaluate", plan.plan_id, dev.wall_s, split="dev", score=dev.score,
                                      parse_failure_rate=dev.parse_failure_rate)
        except UserError as e:
            status, error = "rejected", str(e)
        except RunError as e:
            status, error = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - a dead actor must fail the iteration, not the run
            if not _is_actor_death(e):
                raise
            status, error = "failed", f"actor died: {type(e).__name__}"
            self.trainer = self._spawn_trainer()
        self.phase = "diagnose"
        exp = Experiment(
            id=plan.plan_id,
            parent=plan.parent,
            plan=plan,
            curated=curated,
            validation=report,
            train=result,
            dev=dev,
            status=status,
            error=error,
            wall_s=time.perf_counter() - t0,
        )
        self.experiments.append(exp)
        await self._event("iteration", plan.plan_id, exp.wall_s, status=status, error=error)
        self.log.info(
            "iteration",
            plan=plan.plan_id,
            status=status,
            error=error,
            examples=curated.n_examples if curated else None,
            checks_failed=[c.name for c in report.checks if c.status == "fail"] if report else None,
            final_loss=round(result.losses[-1], 4) if result and result.losses else None,
            tokens_per_s=round(result.tokens_per_s, 1) if result else None,
            dev=round(dev.score, 4) if dev else None,
        )
        return exp

    def _init_adapter(self, plan: Plan) -> str | None:
        """The parent's adapter folder for a plan that continues it; a plan that cannot is rejected."""
        if plan.train.init == "base":
            return None
        parent = next((e for e in self.experiments if e.id == plan.parent), None)
        if parent is None or parent.status != "ok" or parent.train is None or not parent.train.checkpoint:
            raise UserError(f"plan {plan.plan_id}: train.init='parent' needs a trained parent experiment "
                            f"(parent={plan.parent!r}); use train.init='base'")
        if plan.train.method != "lora" or parent.plan is None or parent.plan.train.method != "lora":
            raise UserError(f"plan {plan.plan_id}: train.init='parent' continues a LoRA adapter; "
                            f"use train.method='lora' on both, or train.init='base'")
        return parent.train.checkpoint


def _is_actor_death(e: BaseException) -> bool:
    try:
        from ray.exceptions import RayActorError
    except ImportError:  # pragma: no cover - ray is a hard dependency
        return False
    return isinstance(e, RayActorError)


def _read_examples(path: str) -> list[Any]:
    from ftdojo.messages import Example

    with open(path) as f:
        return [Example.model_validate_json(line) for line in f if line.strip()]
