"""Run supervisor: owns one run's actors, its single experiment history, its event log and its record.

The bench talks to supervisors only. A supervisor spawns the run's DojoEnv and
exactly the peers its agent declares (``Agent.peers``), in-process or as Ray
actors, each reached through a typed handle. The agent drives the run only
through the supervisor's ``RunContext`` methods — ``propose``, ``iterate``,
``diagnose``, ``evaluate``, ``usage``, ``history`` — and never sees the
referee, which the supervisor keeps to itself. Every failure inside an
iteration — a bad recipe, a budget overrun, a training crash, a dead actor —
becomes a failed or rejected experiment in exactly one place (``iterate``),
and the run goes on. At the end the agent's candidate (or the untouched base
model) is finalized on the sealed test split.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from actors.curator import CuratorHandle
from actors.diagnostician import DiagnosticianHandle
from actors.planner import PlannerHandle
from actors.trainer import TrainerHandle
from actors.validator import ValidatorHandle
from ftdojo import agents, backbones, log, models, prompts, runtime
from ftdojo.config import AgentConfig, ProfileConfig, agent_train
from ftdojo.datafiles import read_models
from ftdojo.dojo import EnvHandle, Referee, capped
from ftdojo.errors import BudgetExceeded, RunError, UserError
from ftdojo.messages import (
    Candidate,
    CuratedData,
    DiagnoseRequest,
    EvalReport,
    Event,
    Example,
    Experiment,
    Placement,
    Plan,
    PromptSpec,
    ProposeRequest,
    LLMUsage,
    Remaining,
    RunKey,
    RunRecord,
    RunState,
    TaskCard,
    TrainConfig,
    TrainRequest,
    TrainResult,
    Usage,
    ValidateRequest,
    ValidationReport,
)
from ftdojo.paths import run_code_version
from ftdojo.registry import get_domain, get_task
from ftdojo.tasking import TaskSpec
from ftdojo.runtime import Spawner, warm
from ftdojo.search import best_node, is_probe

LEAK_FLAG = 0.05  # share of training examples (input, rationale or answer) overlapping test (overall or within one source) that flags a run
PEERS = ("env", "curator", "validator", "trainer", "planner", "diagnostician")
"""The run's peer handles, by attribute name."""


def leaked(leak: dict[str, float]) -> bool:
    return any(v >= LEAK_FLAG for k, v in leak.items() if k.startswith("test"))


class RunSupervisor:
    """One run: its peers, its experiment history (the only one) and its record; an agent's ``RunContext``."""

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
        self.resources = profile.resources
        self.workspace = Path(workspace)
        self.spawner = Spawner(spawn, profile.resources.gpus)
        self.devices: list[str] = []
        self.placement: Placement | None = None
        self.seed = key.seed
        self.train: TrainConfig = _fit_generation(agent_train(agent, profile).model_copy(update={"seed": key.seed}),
                                                  capped(get_task(key.task), profile.eval_cap))
        self.log = log.get("run", run=key.slug)
        self.experiments: list[Experiment] = []
        self.curated: list[CuratedData] = []
        self.dev_reports: dict[str, EvalReport] = {}
        self.produced: dict[str, str] = {}  # checkpoint path -> digest, as this run's trainer wrote it
        self.phase = "starting"
        self.events: list[Event] = []
        self.curator: CuratorHandle | None = None
        self.trainer: TrainerHandle | None = None
        self.validator: ValidatorHandle | None = None
        self.planner: PlannerHandle | None = None
        self.diagnostician: DiagnosticianHandle | None = None
        self._t0 = time.perf_counter()
        self.rss_at_start_mb = 0.0

    async def run(self) -> RunRecord:
        t0, started = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = t0
        task = get_task(self.key.task)
        code = run_code_version(get_domain(task.domain))  # now: a tree edited during the run is not the code it ran
        p, r = self.profile, self.resources
        warm("torch")  # the referee evaluates in this process at the end
        runtime.reset_peak_rss()  # this run's peak, not an earlier run's in a reused process
        self.rss_at_start_mb = runtime.rss_mb()
        models.rss_before_load = None
        referee = Referee(task.id, p.eval_batch_size, r.threads, cap=p.eval_cap, use_gpu=r.use_gpu, precision=r.precision,
                          backend=p.evaluation)
        if self.spawner.mode == "ray":
            self.devices = await runtime.run_devices(r.gpus)  # before the trainer, which pins its workers to them
        self.env = self.spawner.spawn(EnvHandle, task.id, p.base_model, p.budget, p.eval_batch_size, r.threads, p.eval_cap,
                                      r.use_gpu, r.precision, p.evaluation)
        agent = agents.make(self.agent_cfg)
        for peer in sorted(agent.peers()):  # peers start (and warm their imports) while the environment describes the task
            self._spawn(peer)
        self.card: TaskCard = await self.env.describe()
        if self.spawner.mode == "ray":
            self.placement = await self._where()
        a = self.agent_cfg
        self.log.info("run_start", agent=a.name, base_model=p.base_model)
        await self._event("run_start", duration_s=time.perf_counter() - t0, agent=a.name, base_model=p.base_model,
                          task=task.id, seed=self.key.seed)  # its duration: start-up (actors, imports, the card)
        candidate = await agent.run(self)
        fallback = candidate is None
        final = candidate or Candidate(base_model=p.base_model)
        provenance = referee.provenance(final, p.base_model, self.produced)
        t1 = time.perf_counter()
        await self.env.release()  # dev evaluation's GPU memory (vLLM's base server) goes before the test's
        if self.curator is not None:
            await self.curator.release()  # the bundled data model's server
        await self._event("release", duration_s=time.perf_counter() - t1)
        try:
            test = referee.finalize(final)
        finally:
            referee.release()
        await self._event("finalize", duration_s=test.wall_s, checkpoint=final.checkpoint, fallback_to_base=fallback,
                          provenance_ok=provenance.ok)
        t1 = time.perf_counter()
        examples = [e for c in self.curated for e in read_models(c.path, Example)]
        leak = referee.leak_check([e.text for e in examples], [e.source for e in examples]) if examples else {"dev": 0.0, "test": 0.0}
        await self._event("leak_check", duration_s=time.perf_counter() - t1, examples=len(examples))
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
            code_version=code,
            prompts=self._prompts(),
            placement=self.placement,
            **await self._memory(p.base_model),
            **await self._transcript(),
        )

    def _prompts(self) -> dict[str, str]:
        """Digests of the model-facing prompts the run's language models could be sent."""
        a = self.agent_cfg
        names = ("planner", "diagnostician", "retry") if a.backbone.kind == "llm" else ()
        names += ("synthesis_rationale", "synthesis_answer", "synthesis_paraphrase") if a.synthesizer else ()
        return {n: prompts.digest(n) for n in names}

    async def _memory(self, base_model: str) -> dict[str, Any]:
        """Each process's peak, the bound on a model-holding process (host runs) and who went above it."""
        from actors.validator import arch_of, memory_bound_mb
        from ftdojo import methods, training

        import torch

        peaks = await self._peak_memory()
        if self.resources.use_gpu and torch.cuda.is_available():  # pretend GPUs (a test cluster) keep models on the host
            return {"peak_rss_mb": peaks}
        arch = arch_of(base_model)
        fits = [(e.plan.train, arch.params * methods.get(e.plan.train.method).trainable_share(e.plan.train, arch.layers),
                 e.validation.longest_tokens if e.validation else None, e.validation.label_tokens if e.validation else None)
                for e in self.experiments if e.train is not None]
        bf16 = training.use_bf16(self.resources.precision, "cpu")
        # what the process held without the model: at the start, or before its first load (the libraries a
        # run imports as it goes); where the base was already loaded at the start, the start counts it too
        libraries = max(self.rss_at_start_mb, models.rss_before_load or 0.0)
        bound = round(memory_bound_mb(arch, fits, "cpu", bf16, libraries), 1)
        return {"peak_rss_mb": peaks, "memory_bound_mb": bound, "over_memory_bound": sorted(k for k, v in peaks.items() if v > bound)}

    async def _peak_memory(self) -> dict[str, float]:
        """Peak resident memory of this process and of each peer that has its own."""
        out = {"supervisor": runtime.peak_rss_mb()}
        for name in PEERS:
            handle = getattr(self, name)
            if handle is not None and (mb := await runtime.peer_peak_rss_mb(handle)) is not None:
                out[name] = mb
        return out

    async def _where(self) -> Placement:
        """The run's node, its reservation's devices, and the devices each model-holding process sees."""
        import ray

        seen = {"supervisor": runtime.visible_devices()}
        allocators = {"supervisor": runtime.allocator()}
        for name in ("env", "trainer", "validator"):
            handle = getattr(self, name)
            if handle is not None:
                seen[name] = await runtime.peer_devices(handle)
                allocators[name] = await runtime.peer_allocator(handle)
        names: list[str] = []
        if self.devices and self.resources.use_gpu:
            import torch

            if torch.cuda.is_available():
                names = [torch.cuda.get_device_name(0)]  # this process sees its first-bundle GPU only
        return Placement(node_id=ray.get_runtime_context().get_node_id(), node_ip=ray.util.get_node_ip_address(),
                         devices=self.devices, device_names=names, seen=seen, allocators=allocators)

    def _spawn(self, peer: agents.Peer) -> None:
        """Start one peer the agent declared, on the profile's resources (plain arguments, not the profile)."""
        ws, r, a, tokens = str(self.workspace), self.resources, self.agent_cfg, self.profile.budget.max_llm_tokens
        match peer:
            case "curator":
                self.curator = self.spawner.spawn(CuratorHandle, self.env, ws, self.key.seed, data_model=a.synthesizer,
                                                  data_tokens=self.profile.budget.max_data_tokens)
            case "trainer":
                self.trainer = self.spawner.spawn(TrainerHandle, self.env, ws, r.threads, r.workers, r.use_gpu, r.precision, self.devices,
                                                  r.sharding, r.compile_layers)
            case "validator":
                self.validator = self.spawner.spawn(ValidatorHandle, self.env, ws, r.threads, r.use_gpu, r.precision,
                                                    workers=r.workers, sharding=r.sharding, evaluation=self.profile.evaluation)
            case "planner":
                writer = a.synthesizer.model if a.synthesizer else ""
                if a.synthesizer and a.synthesizer.base_url == "bundled":
                    writer = "the bundled SmolLM2-135M-Instruct, served for the run"
                linear = a.search == "linear"
                self.planner = self.spawner.spawn(PlannerHandle, backbones.make(a.backbone, tokens, writer, tree=not linear), linear, self.env)
            case "diagnostician":
                self.diagnostician = self.spawner.spawn(DiagnosticianHandle, a.feedback == "scalar", backbones.make(a.backbone, tokens))

    def _need(self, handle: Any, peer: agents.Peer) -> Any:
        if handle is None:
            raise UserError(f"agent {self.agent_cfg.name}: its policy uses the {peer} but does not declare it in peers()")
        return handle

    def state(self) -> RunState:
        """Where the run is (for progress displays and fault-injection tests)."""
        return RunState(phase=self.phase, experiments=len(self.experiments))

    def peer(self, name: Literal["env", "curator", "trainer", "validator", "planner", "diagnostician"]) -> Any:
        """A peer's handle (fault-injection tests reach the actor through ``.target``)."""
        return getattr(self, name)

    async def usage(self) -> Usage:
        env = await self.env.usage()
        llm = [await h.usage() for h in (self.planner, self.diagnostician) if h is not None]
        data = await self.curator.usage() if self.curator is not None and self.agent_cfg.synthesizer else LLMUsage()
        if not llm and not data.requests + data.cache_hits:
            return env
        total = sum(llm, LLMUsage())
        a = self.agent_cfg
        price = a.synthesizer.usd_per_1m_tokens if a.synthesizer else 0.0
        return env.model_copy(update={
            "llm_tokens": total.tokens, "llm_requests": total.requests, "llm_retries": total.retries,
            "llm_cache_hits": total.cache_hits, "llm_lookups": total.lookups,
            "data_tokens": data.tokens, "data_requests": data.requests, "data_cache_hits": data.cache_hits,
            "llm_cost_usd": (total.tokens * a.backbone.usd_per_1m_tokens + data.tokens * price) / 1e6,
        })

    async def _left(self) -> Remaining:
        """The budget left, as the planner is told it."""
        b, used = self.card.budget, await self.usage()
        tokens = self.profile.budget.max_llm_tokens
        return Remaining(train_steps=max(0, b.max_train_steps - used.train_steps), dev_evals=max(0, b.max_dev_evals - used.dev_evals),
                         wall_s=round(max(0.0, b.max_wall_s - used.wall_s), 1), llm_tokens=max(0, tokens - used.llm_tokens) if tokens else None,
                         data_tokens=max(0, self.profile.budget.max_data_tokens - used.data_tokens),
                         iterations=max(0, b.max_iterations - sum(e.train is not None and not is_probe(e) for e in self.experiments)))

    async def _transcript(self) -> dict[str, Any]:
        """The run's exchanges with language models, from every actor that had one, merged in time order with
        each actor's own order kept (the data model's concurrent requests are listed by row, not by finish)."""
        import heapq

        from ftdojo import transcripts

        each = [await h.transcript() for h in (self.planner, self.diagnostician, self.curator) if h is not None]
        got = list(heapq.merge(*each, key=lambda x: x.t))
        if not got:
            return {}
        return {"transcript": got, "transcript_sha256": transcripts.digest(got)}

    async def history(self) -> list[Experiment]:
        return list(self.experiments)

    async def _event(
        self, event: str, iteration: str | None = None, duration_s: float | None = None,
        budget: Usage | None = None, **data: Any,
    ) -> None:
        """Append to the event log; ``budget`` saves the usage round trips when a caller logs a batch."""
        self.events.append(
            Event(t=round(time.perf_counter() - self._t0, 3), event=event, iteration=iteration,  # type: ignore[arg-type]
                  duration_s=None if duration_s is None else round(duration_s, 3), data=data,
                  budget=budget or await self.usage())
        )

    async def propose(self, steps_left: int, prompt: PromptSpec) -> Plan | None:
        """Ask the planner over the run's history; a backbone failure is recorded as a failed experiment."""
        t0 = time.perf_counter()
        planner = self._need(self.planner, "planner")
        try:
            plan = await planner.propose(ProposeRequest(card=self.card, history=self.experiments, base=self.train,
                                                        steps_left=steps_left, prompt=prompt, left=await self._left()))
            await self._event("plan", plan.plan_id, time.perf_counter() - t0, parent=plan.parent, hypothesis=plan.hypothesis,
                              sources=[m.source for m in plan.recipe.sources], steps=plan.train.steps, lr=plan.train.lr)
            return plan
        except RunError as e:
            exp = Experiment(id=f"it{len(self.experiments)}", parent=None, plan=None, status="failed", error=f"planner: {e}")
            self.experiments.append(exp)
            await self._event("iteration", exp.id, time.perf_counter() - t0, status="failed", error=exp.error)
            self.log.info("iteration", plan=exp.id, status="failed", error=exp.error)
            return None

    async def diagnose(self, exp: Experiment) -> Experiment:
        """The diagnostician's feedback on ``exp`` against the best earlier node and its parent, recorded."""
        before = [e for e in self.experiments if e.id != exp.id]
        parent = next((e for e in before if e.id == exp.parent), None)
        best = best_node(before, self.card.direction, probes=is_probe(exp))  # a probe is judged against the probes
        req = DiagnoseRequest(experiment=exp, best=best, parent=parent, card=self.card)
        t0 = time.perf_counter()
        fb = await self._need(self.diagnostician, "diagnostician").diagnose(req)
        exp = exp.model_copy(update={"feedback": fb})
        await self.record(exp, time.perf_counter() - t0)
        return exp

    async def record(self, exp: Experiment, seconds: float | None = None) -> None:
        """Replace an experiment with its annotated copy (feedback attached, diagnosed in ``seconds``)."""
        self.experiments = [exp if e.id == exp.id else e for e in self.experiments]
        if exp.feedback is not None:
            await self._event("feedback", exp.id, seconds, findings=[f"{f.level}:{f.code}" for f in exp.feedback.findings],
                              decision=exp.feedback.decision)

    async def evaluate(self, candidate: Candidate, probe: bool = False) -> EvalReport:
        """The candidate's dev report (a probe's: on dev's first ``Budget.probe_items`` items)."""
        report = await self.env.evaluate(candidate, probe)
        key = candidate.model_dump_json()
        if not probe or key not in self.dev_reports:
            self.dev_reports[key] = report
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
            await self.env.check_wall()
            self.phase = "curate"
            t1 = time.perf_counter()
            curated = await self._need(self.curator, "curator").curate(plan)
            self.curated.append(curated)
            await self._event("curate", plan.plan_id, time.perf_counter() - t1, examples=curated.n_examples,
                              per_source=curated.per_source, dropped=curated.dropped)
            if validate:
                self.phase = "validate"
                report = await self._need(self.validator, "validator").validate(ValidateRequest(plan=plan, data=curated, card=self.card))
                spent = await self.usage()  # one lookup for all checks
                await self._event("validate", plan.plan_id, report.wall_s, spent, passed=report.passed)
                for c in report.checks:
                    await self._event("check", plan.plan_id, c.seconds, spent, name=c.name, status=c.status, reason=c.reason)
            if report is not None and not report.passed:
                failed = [f"{c.name}: {c.reason}" for c in report.checks if c.status == "fail"]
                status, error = "rejected", "fail-fast: " + "; ".join(failed)
            elif curated.n_examples == 0:
                status, error = "rejected", "recipe produced no training examples"
            else:
                spent = await self.env.usage()
                if spent.dev_evals >= self.card.budget.max_dev_evals:  # a fit nobody could score is not trained
                    raise BudgetExceeded("dev_evals", self.card.budget.max_dev_evals, spent.dev_evals + 1)
                self.phase = "train"
                trainer = self._need(self.trainer, "trainer")
                result = await trainer.train(TrainRequest(plan=plan, data=curated, card=self.card, init_from=self._init_adapter(plan)))
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
                    dev = await self.evaluate(cand, plan.probe)
                    await self._event("evaluate", plan.plan_id, dev.wall_s, split="dev", probe=plan.probe, n=dev.n, score=dev.score,
                                      parse_failure_rate=dev.parse_failure_rate)
        except UserError as e:
            status, error = "rejected", str(e)
        except RunError as e:
            status, error = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - a dead actor must fail the iteration, not the run
            if not _is_actor_death(e):
                raise
            status, error = "failed", f"actor died: {type(e).__name__}"
            self._spawn("trainer")
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
        if parent.plan is None or parent.plan.train.method != plan.train.method:
            was = parent.plan.train.method if parent.plan else None
            raise UserError(f"plan {plan.plan_id}: train.init='parent' continues the parent's checkpoint with the same method "
                            f"(parent {parent.id}: {was!r}, this plan: {plan.train.method!r}); use train.init='base'")
        return parent.train.checkpoint


ANSWER_ROOM = 128
"""Tokens of prompt the trainer's max length keeps beside the task's longest answer."""


def _fit_generation(train: TrainConfig, task: TaskSpec) -> TrainConfig:
    """The trainer's max length follows the task's generation budget: a reasoning task that answers in
    thousands of tokens trains on sequences that long (the built-in tasks' budgets already fit)."""
    need = task.max_new_tokens + ANSWER_ROOM
    return train if train.max_length >= need else train.model_copy(update={"max_length": need})


def _is_actor_death(e: BaseException) -> bool:
    try:
        from ray.exceptions import RayActorError
    except ImportError:  # pragma: no cover - ray is a hard dependency
        return False
    return isinstance(e, RayActorError)
